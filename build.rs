//! refinery embeds `sql/migrations` at compile time, but cargo does not know a new file
//! there should rebuild the crate: without this a new migration is silently missing.
fn main() {
    println!("cargo:rerun-if-changed=sql/migrations");
}
