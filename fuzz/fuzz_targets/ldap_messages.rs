//! The LDAP connector's own BER reader (full import): any byte stream a server could send is
//! decoded into messages or refused with an error, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = idsync_connector_ldap::fuzz_decode_stream(data);
});
