//! The simulated issuers' records: which cards exist, who holds each (name,
//! ID number, the phone the bank has on file) and how each behaves. README
//! ("Test cards") lists the same table; a card not in it has no issuer, so
//! it never binds.
use super::DeclineReason;
use crate::domain::card::luhn_valid;

/// A cardholder as the issuer knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestHolder {
    pub name: &'static str,
    pub id_number: &'static str,
    /// The phone on file, E.164.
    pub phone: &'static str,
}

pub const ZHANG_SAN: TestHolder = TestHolder {
    name: "Zhang San",
    id_number: "11010519491231002X",
    phone: "+8613800138000",
};

pub const LI_SI: TestHolder = TestHolder {
    name: "Li Si",
    id_number: "110101199003074477",
    phone: "+8613900139000",
};

pub const WANG_FANG: TestHolder = TestHolder {
    name: "王芳",
    id_number: "440305198506151233",
    phone: "+8613700137000",
};

/// One card the simulated issuers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCard {
    pub number: &'static str,
    pub holder: TestHolder,
    /// Refused at verification (binding) for this reason.
    pub at_verification: Option<DeclineReason>,
    /// Every charge declined for this reason.
    pub at_charge: Option<DeclineReason>,
}

const fn card(number: &'static str, holder: TestHolder) -> TestCard {
    TestCard {
        number,
        holder,
        at_verification: None,
        at_charge: None,
    }
}

const fn refused(number: &'static str, reason: DeclineReason) -> TestCard {
    TestCard {
        at_verification: Some(reason),
        ..card(number, ZHANG_SAN)
    }
}

const fn charge_declined(number: &'static str, reason: DeclineReason) -> TestCard {
    TestCard {
        at_charge: Some(reason),
        ..card(number, ZHANG_SAN)
    }
}

pub const TEST_CARDS: [TestCard; 12] = [
    card("4242424242424242", ZHANG_SAN),
    card("5555555555554444", ZHANG_SAN),
    card("6200000000000005", ZHANG_SAN),
    card("4111111111111111", LI_SI),
    card("5105105105105100", LI_SI),
    card("6212345678901265", WANG_FANG),
    refused("4000000000000002", DeclineReason::DoNotHonor),
    refused("4000000000000069", DeclineReason::ExpiredCard),
    refused("4000000000000127", DeclineReason::CvvMismatch),
    refused("4000000000000119", DeclineReason::ProcessingError),
    charge_declined("4000000000009995", DeclineReason::InsufficientFunds),
    charge_declined("4000000000000341", DeclineReason::DoNotHonor),
];

/// The load-test range: every 16-digit number that starts with these eight
/// digits and passes the Luhn check is one more of Zhang San's cards,
/// verified and approved — so a benchmark can bind as many distinct cards
/// as it needs (each card has its own daily usage, as real shoppers' do).
pub const LOAD_TEST_PREFIX: &str = "40000200";

/// The record every card of the load-test range shares.
const LOAD_TEST_CARD: TestCard = card("40000200########", ZHANG_SAN);

/// The issuer's record of `number`, if any issuer has one.
pub fn test_card(number: &str) -> Option<&'static TestCard> {
    if number.len() == 16 && number.starts_with(LOAD_TEST_PREFIX) && luhn_valid(number) {
        return Some(&LOAD_TEST_CARD);
    }
    TEST_CARDS.iter().find(|c| c.number == number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::shopper::id_check_char;
    use paybind_shared::person::{FullName, Phone};

    #[test]
    fn every_record_is_well_formed() {
        for c in TEST_CARDS {
            assert!(luhn_valid(c.number), "{}", c.number);
            let id = c.holder.id_number.as_bytes();
            assert_eq!(id_check_char(&id[..17]), id[17], "{}", c.holder.id_number);
            let phone = Phone::parse(c.holder.phone).expect("a mobile number");
            assert_eq!(phone.e164(), c.holder.phone, "kept as E.164");
            assert!(FullName::parse(c.holder.name).is_ok());
        }
        let mut numbers: Vec<_> = TEST_CARDS.iter().map(|c| c.number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), TEST_CARDS.len(), "one record per card");
        assert!(numbers.iter().all(|n| !n.starts_with(LOAD_TEST_PREFIX)));
    }

    #[test]
    fn the_load_test_range_is_luhn_valid_numbers_under_its_prefix_only() {
        let record = test_card("4000020000000018").expect("in the range");
        assert_eq!(record.holder, ZHANG_SAN);
        assert_eq!((record.at_verification, record.at_charge), (None, None));
        assert!(
            test_card("4000020000000011").is_none(),
            "fails the Luhn check"
        );
        assert!(test_card("400002000000000").is_none(), "15 digits");
        assert!(test_card("4000030000000017").is_none(), "another prefix");
    }
}
