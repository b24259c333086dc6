//! merchant-svc: the merchant's side of paybind (users, stored binding tokens,
//! orders, the storefront). It is built in the next issue; until then this
//! binary only says so.
fn main() {
    eprintln!("merchant-svc is not built yet: see issue 3 (payment-svc is in payment-svc/)");
    std::process::exit(2);
}
