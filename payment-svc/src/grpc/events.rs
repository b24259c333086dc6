//! `paybind.payment.v1.EventService`: the merchant's event feed, read page
//! by page (`ListEvents`) or followed live (`StreamEvents`). Both read the
//! same sequence, in cursor order.
use std::{collections::VecDeque, pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use paybind_proto::payment::v1::{self as pb, event_service_server::EventService};
use paybind_shared::{tls::PeerCertificate, wire::timestamp};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::{convert, merchant};
use crate::domain::{error::DomainError, events::Event, merchants::Merchant, Services};

/// A stream with nothing to send says so this often.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// A follower looks again this often even when not woken: events may be
/// sequenced by another replica.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// Events read per query while following.
const FOLLOW_PAGE: i64 = 100;
/// How often a follower checks its cursor against the purge horizon again.
const HORIZON_RECHECK: Duration = Duration::from_secs(1);
/// The least time between two reads of one follower: under load, the
/// events written meanwhile come in one read instead of one read each; a
/// quiet feed is read at once.
const FOLLOW_GATHER: Duration = Duration::from_millis(5);

pub struct EventApi {
    services: Arc<Services>,
}

impl EventApi {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventApi {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let merchant = merchant(&request)?;
        let (after, limit) =
            convert::list_events(request.into_inner()).map_err(DomainError::from)?;
        let events = self.services.list_events(&merchant, after, limit).await?;
        let next = events.last().map_or(after, |e| e.seq);
        Ok(Response::new(pb::ListEventsResponse {
            events: events.into_iter().map(convert::event).collect(),
            next_cursor: convert::cursor_to_wire(next),
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        let merchant = merchant(&request)?;
        let event_id = request.into_inner().event_id;
        let delivery = self.services.get_delivery(&merchant, &event_id).await?;
        Ok(Response::new(pb::GetDeliveryResponse {
            delivery: Some(convert::delivery(delivery)),
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let merchant = merchant(&request)?;
        let (state, after, limit) =
            convert::list_deliveries(request.into_inner()).map_err(DomainError::from)?;
        let deliveries = self
            .services
            .list_deliveries(&merchant, state, after, limit)
            .await?;
        let next = deliveries.last().map_or(after, |d| d.seq);
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: deliveries.into_iter().map(convert::delivery).collect(),
            next_cursor: convert::cursor_to_wire(next),
        }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let merchant = merchant(&request)?;
        let peer = request.extensions().get::<PeerCertificate>().cloned();
        let pb::StreamEventsRequest { after_cursor } = request.into_inner();
        let after =
            convert::cursor(&after_cursor).map_err(|e| DomainError::from(e.at("after_cursor")))?;
        self.services.check_cursor(&merchant, after).await?;
        let follower = Follower {
            wake: self.services.events_sequenced(),
            closing: self.services.events_closing(),
            _open: self.services.metrics.event_stream_opened(),
            services: self.services.clone(),
            merchant,
            peer,
            after,
            buffered: VecDeque::new(),
            last_sent: Instant::now(),
            horizon_checked: Instant::now(),
            last_read: Instant::now() - FOLLOW_GATHER,
        };
        let stream = futures::stream::unfold(follower, |mut f| async move {
            let item = f.next().await?;
            Some((item, f))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One `StreamEvents` call: where it is in the feed, and what it has read
/// but not sent yet.
struct Follower {
    services: Arc<Services>,
    merchant: Arc<Merchant>,
    /// The caller's certificate, checked again each round: a merchant
    /// disabled, or a certificate revoked, ends its streams at once.
    peer: Option<PeerCertificate>,
    after: i64,
    buffered: VecDeque<Event>,
    wake: tokio::sync::watch::Receiver<u64>,
    /// Ends the stream when the service stops: the client reconnects from
    /// the last cursor it saw.
    closing: tokio::sync::watch::Receiver<bool>,
    last_sent: Instant,
    /// When the cursor was last checked against the purge horizon.
    horizon_checked: Instant,
    /// When the feed was last read.
    last_read: Instant,
    /// Counted in `paybind_event_streams` while the stream is open.
    _open: crate::domain::metrics::StreamGuard,
}

impl Follower {
    /// The next event, or a heartbeat once nothing came for a while;
    /// `None` once the service is stopping.
    async fn next(&mut self) -> Option<Result<pb::StreamEventsResponse, Status>> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Err(refused) = self
                .services
                .merchants
                .authenticate(self.peer.as_ref())
                .await
            {
                return Some(Err(refused.into()));
            }
            if let Some(event) = self.buffered.pop_front() {
                self.after = event.seq;
                self.last_sent = Instant::now();
                return Some(Ok(pb::StreamEventsResponse {
                    item: Some(pb::stream_events_response::Item::Event(convert::event(
                        event,
                    ))),
                }));
            }
            // The purge horizon is read again at most every
            // `HORIZON_RECHECK`, not for every page: a follower is at the
            // head of the feed, a month ahead of what a purge removes, all
            // but always.
            tokio::time::sleep_until(self.last_read + FOLLOW_GATHER).await;
            self.last_read = Instant::now();
            let check_horizon = self.horizon_checked.elapsed() >= HORIZON_RECHECK;
            if check_horizon {
                self.horizon_checked = Instant::now();
            }
            let page = match self
                .services
                .follow_events(&self.merchant, self.after, FOLLOW_PAGE, check_horizon)
                .await
            {
                Ok(page) => page,
                Err(e) => return Some(Err(e.into())),
            };
            if !page.is_empty() {
                self.buffered.extend(page);
                continue;
            }
            let heartbeat_at = self.last_sent + HEARTBEAT;
            tokio::select! {
                _ = self.wake.changed() => {}
                _ = self.closing.changed() => {}
                () = tokio::time::sleep(FOLLOW_POLL) => {}
            }
            if Instant::now() >= heartbeat_at {
                self.last_sent = Instant::now();
                return Some(Ok(pb::StreamEventsResponse {
                    item: Some(pb::stream_events_response::Item::Heartbeat(timestamp(
                        paybind_shared::clock::now_ms(),
                    ))),
                }));
            }
        }
    }
}
