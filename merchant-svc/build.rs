// sqlx::migrate! embeds the migrations when it compiles: a migration added
// since the last build must make cargo compile the service again.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
