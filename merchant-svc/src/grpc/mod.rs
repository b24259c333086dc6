//! The gRPC face of merchant-svc: `paybind.merchant.v1.MerchantService`,
//! for the shop's other systems and its operators, over mTLS.
use std::sync::Arc;

use paybind_proto::{
    merchant::v1::{self as mpb, merchant_service_server::MerchantService},
    payment::v1 as pb,
};
use paybind_shared::grpc::ErrorStatus;
use tonic::{Code, Request, Response, Status};

use crate::domain::{CheckoutInput, Shop};

mod convert;
mod errors;

pub struct MerchantApi {
    shop: Arc<Shop>,
    /// Certificate CNs allowed to call; empty allows any the CA signed.
    allowed_clients: Vec<String>,
}

impl MerchantApi {
    pub fn new(shop: Arc<Shop>, allowed_clients: Vec<String>) -> Self {
        Self {
            shop,
            allowed_clients,
        }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let identity = paybind_shared::tls::peer_identity(request);
        let allowed = match &identity {
            Some(cn) => self.allowed_clients.is_empty() || self.allowed_clients.contains(cn),
            None => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(ErrorStatus::new(
                Code::PermissionDenied,
                "CLIENT_NOT_ALLOWED",
                "this client certificate may not call the shop's API",
            )
            .build())
        }
    }

    async fn user_response(&self, user_id: &str) -> Result<mpb::User, Status> {
        Ok(convert::user(self.shop.get_user(user_id).await?))
    }
}

#[tonic::async_trait]
impl MerchantService for MerchantApi {
    async fn create_user(
        &self,
        request: Request<mpb::CreateUserRequest>,
    ) -> Result<Response<mpb::CreateUserResponse>, Status> {
        self.authorize(&request)?;
        let mpb::CreateUserRequest {
            user_id,
            display_name,
            phone,
        } = request.into_inner();
        let user = self
            .shop
            .create_user(&user_id, &display_name, &phone)
            .await?;
        Ok(Response::new(mpb::CreateUserResponse {
            user: Some(convert::user(user)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<mpb::GetUserRequest>,
    ) -> Result<Response<mpb::GetUserResponse>, Status> {
        self.authorize(&request)?;
        let mpb::GetUserRequest { user_id } = request.into_inner();
        Ok(Response::new(mpb::GetUserResponse {
            user: Some(self.user_response(&user_id).await?),
        }))
    }

    async fn start_binding(
        &self,
        request: Request<mpb::StartBindingRequest>,
    ) -> Result<Response<mpb::StartBindingResponse>, Status> {
        self.authorize(&request)?;
        let mpb::StartBindingRequest {
            user_id,
            presentation,
            return_url,
        } = request.into_inner();
        let session = self
            .shop
            .start_binding(&user_id, presentation, &return_url)
            .await?;
        Ok(Response::new(mpb::StartBindingResponse {
            session_id: session.session_id,
            binding_page_url: session.binding_page_url,
            expire_time: session.expire_time,
        }))
    }

    async fn checkout(
        &self,
        request: Request<mpb::CheckoutRequest>,
    ) -> Result<Response<mpb::CheckoutResponse>, Status> {
        self.authorize(&request)?;
        let mpb::CheckoutRequest {
            user_id,
            amount,
            description,
            presentation,
            return_url,
            idempotency_key,
        } = request.into_inner();
        let order = self
            .shop
            .checkout(CheckoutInput {
                user_id,
                amount,
                description,
                presentation,
                return_url,
                idempotency_key,
            })
            .await?;
        Ok(Response::new(mpb::CheckoutResponse {
            order: Some(convert::order(order)),
        }))
    }

    async fn complete_session(
        &self,
        request: Request<mpb::CompleteSessionRequest>,
    ) -> Result<Response<mpb::CompleteSessionResponse>, Status> {
        self.authorize(&request)?;
        let mpb::CompleteSessionRequest { session_id } = request.into_inner();
        let (user, order, session_status) = self.shop.complete_session(&session_id).await?;
        Ok(Response::new(mpb::CompleteSessionResponse {
            user: Some(self.user_response(&user.id).await?),
            order: order.map(convert::order),
            session_status,
        }))
    }

    async fn submit_shopper_info(
        &self,
        request: Request<mpb::SubmitShopperInfoRequest>,
    ) -> Result<Response<mpb::SubmitShopperInfoResponse>, Status> {
        self.authorize(&request)?;
        let mpb::SubmitShopperInfoRequest {
            session_id,
            shopper,
            card,
        } = request.into_inner();
        let session = self
            .shop
            .submit_shopper_info(pb::SubmitBindInfoRequest {
                session_id,
                shopper,
                card,
            })
            .await?;
        Ok(Response::new(mpb::SubmitShopperInfoResponse {
            session_status: session.status,
            code_sent_to: session.code_sent_to,
        }))
    }

    async fn verify_shopper_code(
        &self,
        request: Request<mpb::VerifyShopperCodeRequest>,
    ) -> Result<Response<mpb::VerifyShopperCodeResponse>, Status> {
        self.authorize(&request)?;
        let mpb::VerifyShopperCodeRequest { session_id, code } = request.into_inner();
        let (user, order, _) = self.shop.verify_shopper_code(&session_id, &code).await?;
        Ok(Response::new(mpb::VerifyShopperCodeResponse {
            user: Some(self.user_response(&user.id).await?),
            order: order.map(convert::order),
        }))
    }

    async fn get_order(
        &self,
        request: Request<mpb::GetOrderRequest>,
    ) -> Result<Response<mpb::GetOrderResponse>, Status> {
        self.authorize(&request)?;
        let mpb::GetOrderRequest { order_id } = request.into_inner();
        let order = self.shop.order(&order_id).await?;
        Ok(Response::new(mpb::GetOrderResponse {
            order: Some(convert::order(order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<mpb::ListOrdersRequest>,
    ) -> Result<Response<mpb::ListOrdersResponse>, Status> {
        self.authorize(&request)?;
        let mpb::ListOrdersRequest {
            user_id,
            page_size,
            page_token,
        } = request.into_inner();
        let (orders, next_page_token) = self
            .shop
            .list_orders(&user_id, page_size, &page_token)
            .await?;
        Ok(Response::new(mpb::ListOrdersResponse {
            orders: orders.into_iter().map(convert::order).collect(),
            next_page_token,
        }))
    }

    async fn refund_order(
        &self,
        request: Request<mpb::RefundOrderRequest>,
    ) -> Result<Response<mpb::RefundOrderResponse>, Status> {
        self.authorize(&request)?;
        let mpb::RefundOrderRequest {
            order_id,
            amount,
            reason,
            idempotency_key,
        } = request.into_inner();
        let order = self
            .shop
            .refund_order(&order_id, amount, &reason, &idempotency_key)
            .await?;
        Ok(Response::new(mpb::RefundOrderResponse {
            order: Some(convert::order(order)),
        }))
    }

    async fn remove_card(
        &self,
        request: Request<mpb::RemoveCardRequest>,
    ) -> Result<Response<mpb::RemoveCardResponse>, Status> {
        self.authorize(&request)?;
        let mpb::RemoveCardRequest { user_id } = request.into_inner();
        let user = self.shop.remove_card(&user_id).await?;
        Ok(Response::new(mpb::RemoveCardResponse {
            user: Some(convert::user(user)),
        }))
    }
}
