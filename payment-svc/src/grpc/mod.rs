//! The gRPC face of payment-svc: `paybind.payment.v1.BindingService` here,
//! `EventService` (the event feed) in `events`.
//! The caller (the merchant its client certificate names) is resolved by
//! [`MerchantAuth`] before a handler runs; handlers parse the request, call
//! the domain and convert the answer; nothing more.
use std::sync::Arc;

use paybind_proto::payment::v1::{self as pb, binding_service_server::BindingService};
use paybind_shared::{
    grpc::{caller, Authenticate},
    ids::SessionId,
    tls::PeerCertificate,
};
use tonic::{Request, Response, Status};

use crate::domain::{error::DomainError, merchants::Merchant, sessions::RawSubmission, Services};

pub mod convert;
mod errors;
mod events;
pub mod notify_client;

pub use events::EventApi;

/// Resolves a client certificate to the registered merchant it speaks for
/// (see `domain::merchants`): the only way to say who is calling.
pub struct MerchantAuth(pub Arc<Services>);

impl Authenticate for MerchantAuth {
    type Caller = Arc<Merchant>;

    /// Every method is open to a registered merchant (each sees only its own).
    async fn authenticate(
        &self,
        peer: Option<PeerCertificate>,
        _method: &str,
    ) -> Result<Arc<Merchant>, Status> {
        let merchant = self.0.merchants.authenticate(peer.as_ref()).await?;
        paybind_shared::telemetry::rpc::record_caller(merchant.id.as_str());
        Ok(merchant)
    }
}

/// The `BindingService` implementation.
pub struct BindingApi {
    services: Arc<Services>,
}

impl BindingApi {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }
}

fn merchant<T>(request: &Request<T>) -> Result<Arc<Merchant>, Status> {
    caller::<Arc<Merchant>, T>(request)
}

fn require_direct_entry(merchant: &Merchant) -> Result<(), Status> {
    if merchant.direct_entry {
        Ok(())
    } else {
        Err(DomainError::DirectEntryNotAllowed.into())
    }
}

/// A session id from a request; one that cannot be an id is not found.
fn session_id(raw: &str) -> Result<SessionId, Status> {
    SessionId::parse(raw).map_err(|_| DomainError::SessionNotFound.into())
}

#[tonic::async_trait]
impl BindingService for BindingApi {
    async fn bind(
        &self,
        request: Request<pb::BindRequest>,
    ) -> Result<Response<pb::BindResponse>, Status> {
        let merchant = merchant(&request)?;
        let new = request.into_inner().try_into().map_err(DomainError::from)?;
        let view = self.services.open_session(&merchant, new).await?;
        Ok(Response::new(pb::BindResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn bind_and_pay(
        &self,
        request: Request<pb::BindAndPayRequest>,
    ) -> Result<Response<pb::BindAndPayResponse>, Status> {
        let merchant = merchant(&request)?;
        let new = request.into_inner().try_into().map_err(DomainError::from)?;
        let view = self.services.open_session(&merchant, new).await?;
        Ok(Response::new(pb::BindAndPayResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn get_bind_session(
        &self,
        request: Request<pb::GetBindSessionRequest>,
    ) -> Result<Response<pb::GetBindSessionResponse>, Status> {
        let merchant = merchant(&request)?;
        let pb::GetBindSessionRequest { session_id: id } = request.into_inner();
        let view = self
            .services
            .get_session(&merchant, &session_id(&id)?)
            .await?;
        Ok(Response::new(pb::GetBindSessionResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn submit_bind_info(
        &self,
        request: Request<pb::SubmitBindInfoRequest>,
    ) -> Result<Response<pb::SubmitBindInfoResponse>, Status> {
        let merchant = merchant(&request)?;
        require_direct_entry(&merchant)?;
        let pb::SubmitBindInfoRequest {
            session_id: id,
            shopper,
            card,
        } = request.into_inner();
        let pb::ShopperInfo {
            full_name,
            id_number,
            phone,
        } = shopper.unwrap_or_default();
        let pb::CardInfo {
            number,
            expiry_month,
            expiry_year,
            cvv,
        } = card.unwrap_or_default();
        let submission = self.services.parse_submission(&RawSubmission {
            full_name: &full_name,
            id_number: &id_number,
            phone: &phone,
            card_number: &number,
            expiry_month,
            expiry_year,
            cvv: &cvv,
        })?;
        let view = self
            .services
            .submit(&merchant, &session_id(&id)?, submission)
            .await?;
        Ok(Response::new(pb::SubmitBindInfoResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn resend_bind_code(
        &self,
        request: Request<pb::ResendBindCodeRequest>,
    ) -> Result<Response<pb::ResendBindCodeResponse>, Status> {
        let merchant = merchant(&request)?;
        require_direct_entry(&merchant)?;
        let pb::ResendBindCodeRequest { session_id: id } = request.into_inner();
        let view = self
            .services
            .resend_code(&merchant, &session_id(&id)?)
            .await?;
        Ok(Response::new(pb::ResendBindCodeResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn verify_bind(
        &self,
        request: Request<pb::VerifyBindRequest>,
    ) -> Result<Response<pb::VerifyBindResponse>, Status> {
        let merchant = merchant(&request)?;
        require_direct_entry(&merchant)?;
        let pb::VerifyBindRequest {
            session_id: id,
            code,
        } = request.into_inner();
        let view = self
            .services
            .verify_code(&merchant, &session_id(&id)?, &code)
            .await?;
        Ok(Response::new(pb::VerifyBindResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn pay(
        &self,
        request: Request<pb::PayRequest>,
    ) -> Result<Response<pb::PayResponse>, Status> {
        let merchant = merchant(&request)?;
        let input = request.into_inner().try_into().map_err(DomainError::from)?;
        let payment = self.services.pay(&merchant, input).await?;
        Ok(Response::new(pb::PayResponse {
            payment: Some(convert::payment(payment)),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let merchant = merchant(&request)?;
        let pb::GetPaymentRequest { payment_id } = request.into_inner();
        let id = convert::payment_id(&payment_id).ok_or(DomainError::PaymentNotFound)?;
        let payment = self.services.get_payment(&merchant, &id).await?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(convert::payment(payment)),
        }))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::RefundResponse>, Status> {
        let merchant = merchant(&request)?;
        let input = request.into_inner().try_into().map_err(DomainError::from)?;
        let (refund, payment) = self.services.refund(&merchant, input).await?;
        Ok(Response::new(pb::RefundResponse {
            refund: Some(convert::refund(refund)),
            payment: Some(convert::payment(payment)),
        }))
    }

    async fn unbind(
        &self,
        request: Request<pb::UnbindRequest>,
    ) -> Result<Response<pb::UnbindResponse>, Status> {
        let merchant = merchant(&request)?;
        let (token, user, reason) =
            convert::unbind(request.into_inner()).map_err(DomainError::from)?;
        let view = self
            .services
            .unbind(&merchant, &token, &user, &reason)
            .await?;
        Ok(Response::new(pb::UnbindResponse {
            binding: Some(convert::binding(view)),
        }))
    }

    async fn list_bindings(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let merchant = merchant(&request)?;
        let listing = request.into_inner().try_into().map_err(DomainError::from)?;
        let page = self.services.list_bindings(&merchant, listing).await?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: page.bindings.into_iter().map(convert::binding).collect(),
            next_page_token: page.next_page.map(|c| c.encode()).unwrap_or_default(),
        }))
    }
}
