//! The gRPC face of merchant-svc: `paybind.merchant.v1.MerchantService`,
//! for the shop's other systems and its operators, over mTLS. Who may call
//! is decided by [`OperatorAuth`] before a handler runs; handlers parse the
//! request, call the shop and convert the answer.
use std::sync::Arc;

use paybind_proto::merchant::v1::{self as mpb, merchant_service_server::MerchantService};
use paybind_shared::{
    model::SessionStatus,
    wire::{session_status_to_wire, timestamp},
};
use tonic::{Request, Response, Status};

use crate::domain::{Shop, ShopError};

pub mod access;
pub mod convert;
mod errors;
pub mod notifications;

pub use access::{Operator, OperatorAuth, Role};

pub struct MerchantApi {
    shop: Arc<Shop>,
}

impl MerchantApi {
    pub fn new(shop: Arc<Shop>) -> Self {
        Self { shop }
    }

    async fn user_response(&self, user_id: &str) -> Result<mpb::User, Status> {
        let id = convert::user_id(user_id).map_err(ShopError::from)?;
        Ok(convert::user(self.shop.get_user(&id).await?))
    }
}

fn session_status(s: SessionStatus) -> i32 {
    session_status_to_wire(s) as i32
}

#[tonic::async_trait]
impl MerchantService for MerchantApi {
    async fn create_user(
        &self,
        request: Request<mpb::CreateUserRequest>,
    ) -> Result<Response<mpb::CreateUserResponse>, Status> {
        let new = request.into_inner().try_into().map_err(ShopError::from)?;
        let user = self.shop.create_user(new).await?;
        Ok(Response::new(mpb::CreateUserResponse {
            user: Some(convert::user(user)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<mpb::GetUserRequest>,
    ) -> Result<Response<mpb::GetUserResponse>, Status> {
        let mpb::GetUserRequest { user_id } = request.into_inner();
        Ok(Response::new(mpb::GetUserResponse {
            user: Some(self.user_response(&user_id).await?),
        }))
    }

    async fn start_binding(
        &self,
        request: Request<mpb::StartBindingRequest>,
    ) -> Result<Response<mpb::StartBindingResponse>, Status> {
        let mpb::StartBindingRequest {
            user_id,
            presentation,
            return_url,
        } = request.into_inner();
        let (user_id, presentation) = paybind_shared::fields::AllOk::all_ok((
            convert::user_id(&user_id),
            convert::presentation(presentation),
        ))
        .map_err(ShopError::from)?;
        let session = self
            .shop
            .start_binding(&user_id, presentation, &return_url)
            .await?;
        Ok(Response::new(mpb::StartBindingResponse {
            session_id: session.id.into_string(),
            binding_page_url: session.page_url,
            expire_time: Some(timestamp(session.expire_ms)),
        }))
    }

    async fn checkout(
        &self,
        request: Request<mpb::CheckoutRequest>,
    ) -> Result<Response<mpb::CheckoutResponse>, Status> {
        let input = request.into_inner().try_into().map_err(ShopError::from)?;
        let order = self.shop.checkout(input).await?;
        Ok(Response::new(mpb::CheckoutResponse {
            order: Some(convert::order(order)),
        }))
    }

    async fn complete_session(
        &self,
        request: Request<mpb::CompleteSessionRequest>,
    ) -> Result<Response<mpb::CompleteSessionResponse>, Status> {
        let mpb::CompleteSessionRequest { session_id } = request.into_inner();
        let id = convert::session_id(&session_id).ok_or(ShopError::SessionNotFound)?;
        let outcome = self.shop.complete_session(&id).await?;
        Ok(Response::new(mpb::CompleteSessionResponse {
            user: Some(self.user_response(outcome.user.id.as_str()).await?),
            order: outcome.order.map(convert::order),
            session_status: session_status(outcome.status),
        }))
    }

    async fn submit_shopper_info(
        &self,
        request: Request<mpb::SubmitShopperInfoRequest>,
    ) -> Result<Response<mpb::SubmitShopperInfoResponse>, Status> {
        let mpb::SubmitShopperInfoRequest {
            session_id,
            shopper,
            card,
        } = request.into_inner();
        let id = convert::session_id(&session_id).ok_or(ShopError::SessionNotFound)?;
        let session = self
            .shop
            .submit_shopper_info(&id, convert::shopper_entry(shopper, card))
            .await?;
        Ok(Response::new(mpb::SubmitShopperInfoResponse {
            session_status: session_status(session.status),
            code_sent_to: session.code_sent_to,
        }))
    }

    async fn verify_shopper_code(
        &self,
        request: Request<mpb::VerifyShopperCodeRequest>,
    ) -> Result<Response<mpb::VerifyShopperCodeResponse>, Status> {
        let mpb::VerifyShopperCodeRequest { session_id, code } = request.into_inner();
        let id = convert::session_id(&session_id).ok_or(ShopError::SessionNotFound)?;
        let outcome = self.shop.verify_shopper_code(&id, &code).await?;
        Ok(Response::new(mpb::VerifyShopperCodeResponse {
            user: Some(self.user_response(outcome.user.id.as_str()).await?),
            order: outcome.order.map(convert::order),
        }))
    }

    async fn get_order(
        &self,
        request: Request<mpb::GetOrderRequest>,
    ) -> Result<Response<mpb::GetOrderResponse>, Status> {
        let mpb::GetOrderRequest { order_id } = request.into_inner();
        let id = convert::order_id(&order_id).ok_or(ShopError::OrderNotFound)?;
        let order = self.shop.order(&id).await?;
        Ok(Response::new(mpb::GetOrderResponse {
            order: Some(convert::order(order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<mpb::ListOrdersRequest>,
    ) -> Result<Response<mpb::ListOrdersResponse>, Status> {
        let listing = request.into_inner().try_into().map_err(ShopError::from)?;
        let (orders, next) = self.shop.list_orders(listing).await?;
        Ok(Response::new(mpb::ListOrdersResponse {
            orders: orders.into_iter().map(convert::order).collect(),
            next_page_token: next.map(|c| c.encode()).unwrap_or_default(),
        }))
    }

    async fn refund_order(
        &self,
        request: Request<mpb::RefundOrderRequest>,
    ) -> Result<Response<mpb::RefundOrderResponse>, Status> {
        let mpb::RefundOrderRequest {
            order_id,
            amount,
            reason,
            idempotency_key,
        } = request.into_inner();
        let id = convert::order_id(&order_id).ok_or(ShopError::OrderNotFound)?;
        let (amount, reason, key) =
            convert::refund(amount, &reason, &idempotency_key).map_err(ShopError::from)?;
        let order = self.shop.refund_order(&id, amount, &reason, &key).await?;
        Ok(Response::new(mpb::RefundOrderResponse {
            order: Some(convert::order(order)),
        }))
    }

    async fn remove_card(
        &self,
        request: Request<mpb::RemoveCardRequest>,
    ) -> Result<Response<mpb::RemoveCardResponse>, Status> {
        let mpb::RemoveCardRequest { user_id } = request.into_inner();
        let id = convert::user_id(&user_id).map_err(ShopError::from)?;
        let user = self.shop.remove_card(&id).await?;
        Ok(Response::new(mpb::RemoveCardResponse {
            user: Some(convert::user(user)),
        }))
    }

    async fn get_event_feed(
        &self,
        request: Request<mpb::GetEventFeedRequest>,
    ) -> Result<Response<mpb::GetEventFeedResponse>, Status> {
        let mpb::GetEventFeedRequest { page_size } = request.into_inner();
        let limit = convert::feed_page_size(page_size).map_err(ShopError::from)?;
        let status = self.shop.feed_status(limit).await?;
        Ok(Response::new(convert::event_feed(status)))
    }
}
