//! What the shop sells: a few teas, priced in CNY minor units. In code: a
//! catalogue is not what this shop is about. The teapot costs more than the
//! demo shop's auth-free limit per payment (500.00): with a card on file it
//! is declined (LIMIT_EXCEEDED), while a BindAndPay, authenticated by its
//! code, may pay it (up to 1,000.00).
use paybind_shared::money::{Currency, Money, MoneyError};

/// The currency the catalogue is priced in.
pub const CURRENCY: &str = "CNY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Stable: forms and tests name items by it.
    pub id: &'static str,
    pub name: &'static str,
    pub blurb: &'static str,
    pub price_minor: i64,
}

impl Item {
    pub fn price(&self) -> Result<Money, MoneyError> {
        Money::new(self.price_minor, Currency::parse(CURRENCY)?)
    }
}

pub const ITEMS: &[Item] = &[
    Item {
        id: "jasmine-sampler",
        name: "Jasmine tea sampler",
        blurb: "Five pearls of jasmine green tea to try.",
        price_minor: 1_999,
    },
    Item {
        id: "longjing",
        name: "Longjing green tea, 50 g",
        blurb: "Dragon Well from Hangzhou, this spring's picking.",
        price_minor: 6_800,
    },
    Item {
        id: "tieguanyin",
        name: "Tieguanyin oolong, 100 g",
        blurb: "Roasted oolong from Anxi, for many infusions.",
        price_minor: 12_800,
    },
    Item {
        id: "puer-cake",
        name: "Aged Pu'er cake, 357 g",
        blurb: "A ten-year-old sheng cake from Yunnan.",
        price_minor: 39_800,
    },
    Item {
        id: "yixing-teapot",
        name: "Yixing clay teapot",
        blurb: "Hand-made of zisha clay; above the auth-free limit.",
        price_minor: 80_000,
    },
];

pub fn find(id: &str) -> Option<&'static Item> {
    ITEMS.iter().find(|item| item.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_has_a_price_and_a_unique_id() {
        for (i, item) in ITEMS.iter().enumerate() {
            assert!(item.price().is_ok(), "{}", item.id);
            assert_eq!(find(item.id), Some(item));
            assert!(ITEMS[..i].iter().all(|other| other.id != item.id));
        }
    }

    #[test]
    fn one_item_needs_more_than_the_auth_free_limit() {
        let demo_per_payment = 50_000;
        let demo_bind_and_pay_cap = 100_000;
        assert!(ITEMS
            .iter()
            .any(|i| i.price_minor > demo_per_payment && i.price_minor <= demo_bind_and_pay_cap));
    }
}
