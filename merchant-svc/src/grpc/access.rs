//! Who may call what on the shop's API. An operator is a client
//! certificate named by its subject CN and listed in `[operators]` with its
//! roles; each method needs one role, and `admin` has them all. Decided by
//! the caller layer before any handler runs, from the method's name.
use std::collections::{BTreeMap, BTreeSet};

use paybind_shared::{
    config::Environment,
    grpc::{Authenticate, ErrorStatus},
    tls::{IssuerSet, PeerCertificate},
};
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read users and orders.
    Read,
    /// The storefront: create users, start bindings, check out, pass the
    /// shopper's data and code on, remove a user's card.
    Checkout,
    /// Refund orders.
    Refund,
    /// Everything.
    Admin,
}

impl Role {
    /// The role a method of `MerchantService` needs; `None` for a method
    /// this table does not know (refused: a new method must be placed).
    pub fn needed_for(method: &str) -> Option<Role> {
        Some(match method {
            "GetUser" | "GetOrder" | "ListOrders" | "GetEventFeed" => Role::Read,
            "CreateUser" | "StartBinding" | "Checkout" | "CompleteSession"
            | "SubmitShopperInfo" | "VerifyShopperCode" | "RemoveCard" => Role::Checkout,
            "RefundOrder" => Role::Refund,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Checkout => "checkout",
            Role::Refund => "refund",
            Role::Admin => "admin",
        }
    }
}

/// An operator the layer admitted for this request.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The certificate's subject CN.
    pub identity: String,
}

/// The operators and their roles, from the configuration.
pub struct OperatorAuth {
    operators: BTreeMap<String, BTreeSet<Role>>,
    /// The operators' CA (`tls.ca_cert`): the server also trusts
    /// payment-svc's CA, whose certificates must not pass for operators.
    issuers: Option<IssuerSet>,
    /// Development with no operators listed: any certificate the CA signed
    /// may do everything (production refuses such a configuration).
    open: bool,
}

impl OperatorAuth {
    pub fn new(environment: Environment, operators: &BTreeMap<String, Vec<Role>>) -> Self {
        Self {
            operators: operators
                .iter()
                .map(|(cn, roles)| (cn.clone(), roles.iter().copied().collect()))
                .collect(),
            open: environment == Environment::Development && operators.is_empty(),
            issuers: None,
        }
    }

    /// Admits only certificates one of `issuers` signed.
    pub fn issued_by(mut self, issuers: IssuerSet) -> Self {
        self.issuers = Some(issuers);
        self
    }

    fn may(&self, identity: &str, needed: Role) -> bool {
        self.open
            || self
                .operators
                .get(identity)
                .is_some_and(|roles| roles.contains(&Role::Admin) || roles.contains(&needed))
    }
}

fn refused(code: Code, reason: &'static str, message: String) -> Status {
    ErrorStatus::new(code, reason, message).build()
}

impl Authenticate for OperatorAuth {
    type Caller = Operator;

    async fn authenticate(
        &self,
        peer: Option<PeerCertificate>,
        method: &str,
    ) -> Result<Operator, Status> {
        let peer = peer.filter(|p| self.issuers.as_ref().is_none_or(|set| set.issued(p)));
        let Some(identity) = peer.and_then(|p| p.common_name) else {
            return Err(refused(
                Code::PermissionDenied,
                "CLIENT_NOT_ALLOWED",
                "this client certificate may not call the shop's API".into(),
            ));
        };
        if !self.open && !self.operators.contains_key(&identity) {
            return Err(refused(
                Code::PermissionDenied,
                "CLIENT_NOT_ALLOWED",
                "this client certificate may not call the shop's API".into(),
            ));
        }
        let Some(needed) = Role::needed_for(method) else {
            return Err(refused(
                Code::PermissionDenied,
                "ROLE_REQUIRED",
                format!("{method} is open to no role"),
            ));
        };
        if !self.may(&identity, needed) {
            return Err(ErrorStatus::new(
                Code::PermissionDenied,
                "ROLE_REQUIRED",
                format!("{method} needs the {} role", needed.as_str()),
            )
            .meta("role", needed.as_str())
            .build());
        }
        paybind_shared::telemetry::rpc::record_caller(&identity);
        Ok(Operator { identity })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(environment: Environment, operators: &[(&str, &[Role])]) -> OperatorAuth {
        let map = operators
            .iter()
            .map(|(cn, roles)| (cn.to_string(), roles.to_vec()))
            .collect();
        OperatorAuth::new(environment, &map)
    }

    #[test]
    fn each_role_reaches_its_methods_and_admin_all() {
        let a = auth(
            Environment::Production,
            &[
                ("desk", &[Role::Read]),
                ("web", &[Role::Read, Role::Checkout]),
                ("finance", &[Role::Refund]),
                ("ops", &[Role::Admin]),
            ],
        );
        assert!(a.may("desk", Role::Read));
        assert!(!a.may("desk", Role::Checkout));
        assert!(a.may("web", Role::Checkout));
        assert!(!a.may("web", Role::Refund));
        assert!(a.may("finance", Role::Refund));
        assert!(!a.may("finance", Role::Read));
        assert!(a.may("ops", Role::Refund) && a.may("ops", Role::Checkout));
        assert!(!a.may("stranger", Role::Read));
    }

    #[tokio::test]
    async fn an_operator_certificate_from_another_ca_is_refused() {
        use paybind_shared::tls::dev;
        let ours = tempfile::tempdir().expect("tempdir");
        let theirs = tempfile::tempdir().expect("tempdir");
        let mine = dev::ensure_client(ours.path(), "ops").expect("cert");
        // payment-svc's CA, say, which the server also trusts.
        let other = dev::ensure_client(theirs.path(), "ops").expect("cert");
        let a = auth(Environment::Production, &[("ops", &[Role::Admin])])
            .issued_by(IssuerSet::from_pem_file(&mine.ca_cert).expect("CA"));
        let peer = |f: &paybind_shared::tls::TlsFiles| {
            Some(PeerCertificate::from_pem_file(&f.cert).expect("parse"))
        };
        assert!(a.authenticate(peer(&mine), "RefundOrder").await.is_ok());
        let err = a
            .authenticate(peer(&other), "RefundOrder")
            .await
            .expect_err("another CA");
        assert_eq!(err.code(), Code::PermissionDenied);
        assert_eq!(
            paybind_shared::grpc::reason_of(&err).as_deref(),
            Some("CLIENT_NOT_ALLOWED")
        );
    }

    #[test]
    fn only_development_with_no_operators_is_open() {
        assert!(auth(Environment::Development, &[]).may("anyone", Role::Refund));
        assert!(!auth(Environment::Production, &[]).may("anyone", Role::Read));
        assert!(!auth(Environment::Development, &[("ops", &[Role::Admin])]).may("x", Role::Read));
    }

    #[test]
    fn every_method_of_the_contract_needs_a_role() {
        use paybind_proto::FILE_DESCRIPTOR_SET;
        let set = <prost_types::FileDescriptorSet as prost::Message>::decode(FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let methods: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| f.service.iter())
            .filter(|s| s.name() == "MerchantService")
            .flat_map(|s| s.method.iter().map(|m| m.name().to_owned()))
            .collect();
        assert_eq!(methods.len(), 12, "{methods:?}");
        for method in methods {
            assert!(Role::needed_for(&method).is_some(), "{method} has no role");
        }
    }
}
