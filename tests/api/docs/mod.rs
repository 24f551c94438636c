//! What the docs and the layout promise, checked: every command in README.md and docs/
//! runs as written, and the module graph of src/http has no cycle.

mod documents;
mod layout;
mod runner;
