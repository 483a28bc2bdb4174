#!/usr/bin/env node
// The same HR connector as ../hr-python/hr_connector.py, in JavaScript with only Node's
// standard library (Node 18 or later, for fetch): idsync's connector protocol on standard input
// and output (docs/connector-protocol.md), logs on standard error, against the example HR
// service (../hr-python/hr_service.py). Full import page by page, delta import from the
// service's change feed, export by POST/PATCH/DELETE with `exists` for a re-sent create.
import { createInterface } from "node:readline";

const FIELDS = ["account", "displayName", "givenName", "surname", "mail", "department", "title",
  "manager", "hired", "photo"];
const TYPES = { hired: "timestamp", photo: "binary" };

const send = (m) => new Promise((ok) => {
  if (process.stdout.write(JSON.stringify(m) + "\n")) ok(); else process.stdout.once("drain", ok);
});
const log = (...words) => console.error(...words);

let hr; // { base, token, pageSize }

async function call(method, path, body) {
  const r = await fetch(hr.base + path, {
    method,
    headers: { Authorization: "Bearer " + hr.token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = {};
  try { json = text ? JSON.parse(text) : {}; } catch { json = { error: text }; }
  return [r.status, json];
}

async function get(path) {
  const [status, body] = await call("GET", path);
  if (status !== 200) throw new Error(`GET ${path}: HTTP ${status}: ${body.error}`);
  return body;
}

function attributes(e) {
  const out = { employeeNumber: [e.id] };
  for (const f of FIELDS) if (e[f] !== undefined && e[f] !== null && e[f] !== "") out[f] = [e[f]];
  return out;
}

async function fullImport() {
  let after = "", watermark = null, pages = 0;
  for (;;) {
    const page = await get(`/employees?limit=${hr.pageSize}&after=${encodeURIComponent(after)}`);
    pages++;
    if (watermark === null) watermark = String(page.seq);
    for (const e of page.employees) {
      await send({ type: "object", anchor: e.id, id: e.account, object_type: "person", attributes: attributes(e) });
    }
    if (page.next === null) break;
    after = page.next;
  }
  log(`full import: read ${pages} page(s)`);
  await send({ type: "end", watermark });
}

async function deltaImport(watermark) {
  let since = Number(watermark || 0), pages = 0, page;
  for (;;) {
    page = await get(`/changes?limit=${hr.pageSize}&since=${since}`);
    pages++;
    for (const c of page.changes) {
      const f = c.fields;
      if (c.kind === "add") {
        await send({ type: "change", op: "add", anchor: c.id, id: f.account, object_type: "person", attributes: attributes({ ...f, id: c.id }) });
      } else if (c.kind === "delete") {
        await send({ type: "change", op: "delete", anchor: c.id });
      } else {
        if (f.account) await send({ type: "change", op: "rename", anchor: c.id, new_id: f.account });
        const changes = Object.keys(f).sort().filter((k) => FIELDS.includes(k))
          .map((k) => ({ attribute: k, replace: f[k] === null || f[k] === "" ? [] : [f[k]] }));
        if (changes.length) await send({ type: "change", op: "modify", anchor: c.id, changes });
      }
    }
    if (page.next === null) break;
    since = page.next;
  }
  log(`delta import from ${watermark}: ${pages} page(s)`);
  await send({ type: "end", watermark: String(page.seq) });
}

function fieldsOf(attrs) {
  const out = {};
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "employeeNumber") continue;
    if (!FIELDS.includes(k)) throw new RangeError(`the HR service has no field \`${k}\``);
    out[k] = v.length ? v[0] : null;
  }
  return out;
}

async function exportOne(item) {
  try {
    if (item.op === "add") {
      const fields = { account: item.id, ...fieldsOf(item.attributes) };
      const [status, body] = await call("POST", "/employees", fields);
      if (status === 201) return { status: "applied", anchor: body.id };
      if (status === 409 && body.employee &&
          Object.entries(fields).every(([k, v]) => v === null || body.employee[k] === v)) {
        return { status: "exists", anchor: body.employee.id };
      }
      return { status: "refused", message: `HTTP ${status}: ${body.error}` };
    }
    if (!item.anchor) return { status: "refused", message: "no employee id (anchor) to change" };
    if (item.op === "delete") {
      const [status, body] = await call("DELETE", "/employees/" + item.anchor);
      return status === 200 || status === 404
        ? { status: "applied" } : { status: "refused", message: `HTTP ${status}: ${body.error}` };
    }
    const fields = {};
    for (const d of item.changes || []) {
      if (!FIELDS.includes(d.attribute)) throw new RangeError(`the HR service has no field \`${d.attribute}\``);
      const values = d.replace ?? d.add ?? [];
      fields[d.attribute] = values.length ? values[0] : null;
    }
    if (item.new_id) fields.account = item.new_id;
    const [status, body] = await call("PATCH", "/employees/" + item.anchor, fields);
    return status === 200 ? { status: "applied" } : { status: "refused", message: `HTTP ${status}: ${body.error}` };
  } catch (e) {
    if (e instanceof RangeError) return { status: "refused", message: e.message };
    throw e;
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
let greeted = false;
try {
  for await (const line of lines) {
    const req = JSON.parse(line);
    if (!greeted) {
      greeted = true;
      const s = req.settings || {};
      hr = { base: (s.base_url || "http://127.0.0.1:8081").replace(/\/$/, ""),
        token: (req.secrets || {}).api_token || "", pageSize: Number(s.page_size || 200) };
      await send({ type: "ready", protocol: 1,
        capabilities: { full_import: true, delta_import: true, export: true, delta_sees_own_exports: true },
        identifier: "plain", object_types: ["person"], attribute_types: TYPES });
    } else if (req.type === "full_import") {
      await fullImport();
    } else if (req.type === "delta_import") {
      await deltaImport(req.watermark);
    } else if (req.type === "export") {
      for (const item of req.batch) await send({ type: "result", ref: item.ref, ...(await exportOne(item)) });
    }
  }
} catch (e) {
  await send({ type: "error", message: `HR service at ${hr ? hr.base : "?"}: ${e.message}` });
  process.exitCode = 1;
}
