//! The one case folding of user names and other case-insensitive text: every case-insensitive
//! comparison of the profile store (filters in SQL, the stored `userName` key, PATCH value
//! filters evaluated in Rust) and of its connector (the `userName` → id cache that resolves
//! references) goes through [`fold`], so both sides agree on which names are one, an
//! exact value always matches itself and two spellings that differ only by case, or by
//! canonically equivalent Unicode forms, match each other.

use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;

/// Bumped whenever [`fold`] can answer differently (a new Unicode version in `unicase`, another
/// normalisation): a store whose keys were made by another version has them made again when
/// it is opened.
pub const FOLD_VERSION: &str = "unicode-full-casefold-nfc-1";

/// Full Unicode case folding (Unicode's CaseFolding.txt, status C and F: `Ä` → `ä`, `ß` → `ss`,
/// `Å` (U+212B) → `å`), of the canonical decomposition, recomposed (NFC): Unicode's canonical
/// caseless match (D145), kept composed so that `co "å"` does not match a bare `a`.
pub fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        return if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        };
    }
    let decomposed: String = s.nfd().collect();
    let folded = unicase::UniCase::unicode(decomposed.as_str()).to_folded_case();
    Cow::Owned(folded.nfc().collect())
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn folds_unicode_capitals_not_only_ascii() {
        assert_eq!(fold("Ärger"), "ärger");
        assert_eq!(fold("ÅNGSTRÖM 李"), "ångström 李");
        assert_eq!(fold("Straße"), fold("STRASSE"));
        // The Angstrom sign, and A with a combining ring, are the letter Å.
        assert_eq!(fold("\u{212B}ngström"), fold("Ångström"));
        assert_eq!(fold("A\u{30A}ngstro\u{308}m"), fold("Ångström"));
        assert_eq!(fold("Ben"), "ben");
        assert!(matches!(fold("ben"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn folding_is_stable() {
        for s in [
            "Ärger",
            "İstanbul",
            "ǅemal",
            "ΣΊΣΥΦΟΣ",
            "ﬀ",
            "Ǆ",
            "ῼ",
            "a\u{345}",
        ] {
            let once = fold(s).into_owned();
            assert_eq!(fold(&once), once, "{s}");
        }
    }
}
