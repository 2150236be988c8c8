// Runs hookgate's history schema and queries on a current ClickHouse,
// embedded in-process by chDB (npm chdb, ClickHouse 26.x).
//
//   NODE_PATH=scripts/node/node_modules node chdb.js INPUT.json
//
// INPUT.json:
//   {"statements": ["CREATE DATABASE ...", "CREATE TABLE ...", ...],   // run in order
//    "inserts":    [{"table": "db.exchanges", "columns": ["ts", ...],
//                    "rows": "<JSONEachRow lines>"}],
//    "queries":    [{"name": "...", "sql": "SELECT ..."}]}
//
// It creates a Session in a temporary directory, runs the statements,
// inserts the rows, runs every query and prints one JSON object on stdout:
//   {"version": "26.7.2.1", "results": {"<name>": {"meta": [...], "data": [...]}}}
// Any failure (a statement, an insert, a query) is printed on stderr with
// the SQL and exits 1: nothing is skipped.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");

function fail(msg) {
  process.stderr.write("chdb.js: " + msg + "\n");
  process.exit(1);
}

if (process.argv.length !== 3) fail("usage: node chdb.js INPUT.json");

let chdb;
try {
  chdb = require("chdb");
} catch (e) {
  fail("cannot load the npm package chdb (NODE_PATH=" + (process.env.NODE_PATH || "") + "): " + e.message);
}

const input = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hookgate-chdb-"));
const session = new chdb.Session(dir);
let code = 0;
try {
  const run = (what, sql, format) => {
    try {
      return session.query(sql, format || "CSV");
    } catch (e) {
      throw new Error(what + " failed: " + e.message + "\n--- SQL ---\n" + sql);
    }
  };
  const version = JSON.parse(run("version", "SELECT version() AS v", "JSONEachRow")).v;
  for (const sql of input.statements || []) run("statement", sql);
  for (const ins of input.inserts || []) {
    const sql = "INSERT INTO " + ins.table + " (" + ins.columns.join(", ") + ") FORMAT JSONEachRow\n" + ins.rows;
    run("insert into " + ins.table, sql);
  }
  const results = {};
  for (const q of input.queries || []) {
    const out = run("query " + q.name, q.sql, "JSON");
    const parsed = JSON.parse(out);
    results[q.name] = { meta: parsed.meta, data: parsed.data };
  }
  process.stdout.write(JSON.stringify({ version, results }) + "\n");
} catch (e) {
  process.stderr.write("chdb.js: " + e.message + "\n");
  code = 1;
} finally {
  try {
    if (typeof session.cleanup === "function") session.cleanup();
  } catch (e) {
    // the directory is removed below anyway
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(code);
