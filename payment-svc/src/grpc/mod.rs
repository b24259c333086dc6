//! The gRPC face of payment-svc: `paybind.payment.v1.BindingService`.
//! Handlers resolve the calling merchant from its client certificate, parse
//! the request, call the domain and convert the answer; nothing more.
use std::sync::Arc;

use paybind_proto::payment::v1::{self as pb, binding_service_server::BindingService};
use tonic::{Request, Response, Status};

use crate::domain::{error::DomainError, merchants::Merchant, sessions::RawSubmission, Services};

mod convert;
mod errors;

/// The `BindingService` implementation.
pub struct BindingApi {
    services: Arc<Services>,
}

impl BindingApi {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    /// The caller: the merchant its verified client certificate names. There
    /// is no other way to say who is calling.
    async fn merchant<T>(&self, request: &Request<T>) -> Result<Arc<Merchant>, Status> {
        let identity =
            paybind_shared::tls::peer_identity(request).ok_or(DomainError::UnknownMerchant)?;
        Ok(self.services.merchants.by_cert_identity(&identity).await?)
    }

    fn require_direct_entry(merchant: &Merchant) -> Result<(), Status> {
        if merchant.direct_entry {
            Ok(())
        } else {
            Err(DomainError::DirectEntryNotAllowed.into())
        }
    }
}

#[tonic::async_trait]
impl BindingService for BindingApi {
    async fn bind(
        &self,
        request: Request<pb::BindRequest>,
    ) -> Result<Response<pb::BindResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        let new = request.into_inner().try_into()?;
        let view = self.services.open_session(&merchant, new).await?;
        Ok(Response::new(pb::BindResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn bind_and_pay(
        &self,
        request: Request<pb::BindAndPayRequest>,
    ) -> Result<Response<pb::BindAndPayResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        let new = request.into_inner().try_into()?;
        let view = self.services.open_session(&merchant, new).await?;
        Ok(Response::new(pb::BindAndPayResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn get_bind_session(
        &self,
        request: Request<pb::GetBindSessionRequest>,
    ) -> Result<Response<pb::GetBindSessionResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        let pb::GetBindSessionRequest { session_id } = request.into_inner();
        let view = self.services.get_session(&merchant, &session_id).await?;
        Ok(Response::new(pb::GetBindSessionResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn submit_bind_info(
        &self,
        request: Request<pb::SubmitBindInfoRequest>,
    ) -> Result<Response<pb::SubmitBindInfoResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        Self::require_direct_entry(&merchant)?;
        let pb::SubmitBindInfoRequest {
            session_id,
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
            .submit(&merchant, &session_id, submission)
            .await?;
        Ok(Response::new(pb::SubmitBindInfoResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn resend_bind_code(
        &self,
        request: Request<pb::ResendBindCodeRequest>,
    ) -> Result<Response<pb::ResendBindCodeResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        Self::require_direct_entry(&merchant)?;
        let pb::ResendBindCodeRequest { session_id } = request.into_inner();
        let view = self.services.resend_code(&merchant, &session_id).await?;
        Ok(Response::new(pb::ResendBindCodeResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn verify_bind(
        &self,
        request: Request<pb::VerifyBindRequest>,
    ) -> Result<Response<pb::VerifyBindResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        Self::require_direct_entry(&merchant)?;
        let pb::VerifyBindRequest { session_id, code } = request.into_inner();
        let view = self
            .services
            .verify_code(&merchant, &session_id, &code)
            .await?;
        Ok(Response::new(pb::VerifyBindResponse {
            session: Some(convert::session(view)),
        }))
    }

    async fn pay(
        &self,
        request: Request<pb::PayRequest>,
    ) -> Result<Response<pb::PayResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        let input = request.into_inner().try_into()?;
        let payment = self.services.pay(&merchant, input).await?;
        Ok(Response::new(pb::PayResponse {
            payment: Some(convert::payment(payment)),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        let pb::GetPaymentRequest { payment_id } = request.into_inner();
        let payment = self.services.get_payment(&merchant, &payment_id).await?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(convert::payment(payment)),
        }))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::RefundResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        let input = request.into_inner().try_into()?;
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
        let merchant = self.merchant(&request).await?;
        let pb::UnbindRequest {
            binding_token,
            merchant_user_id,
            reason,
        } = request.into_inner();
        let view = self
            .services
            .unbind(&merchant, &binding_token, &merchant_user_id, &reason)
            .await?;
        Ok(Response::new(pb::UnbindResponse {
            binding: Some(convert::binding(view)),
        }))
    }

    async fn list_bindings(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let merchant = self.merchant(&request).await?;
        let pb::ListBindingsRequest {
            merchant_user_id,
            page_size,
            page_token,
            include_revoked,
        } = request.into_inner();
        let page = self
            .services
            .list_bindings(
                &merchant,
                &merchant_user_id,
                page_size,
                &page_token,
                include_revoked,
            )
            .await?;
        Ok(Response::new(pb::ListBindingsResponse {
            bindings: page.bindings.into_iter().map(convert::binding).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
