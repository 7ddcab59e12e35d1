//! *Available Registers* over HTTP, built once per version of the pool's answer:
//! `GET /api/registers/available` (optionally paged with `?limit=&after=`) and
//! `GET /api/registers/available/{registerId}`.
//!
//! The pool publishes its answer with a version (`AvailableView`); the full answer is
//! serialized once per version, and gzip-compressed once per version when a client accepts
//! gzip, by whichever request needs it first (`AvailableCache`); every other request of that
//! version sends the same bytes. They are dropped as soon as the pool publishes another
//! version or applies a write the answer is built on (a 100,000-register answer is 23 MB: not
//! kept through the next writes), and when no request has sent them for `KEPT_WHILE_UNSENT`
//! (an answer nobody reads is not held; the next reader encodes it again). On a node in a
//! cluster the gossip merges a write into the answer 10–20 ms after the pool applied it: a
//! reader in between encodes the answer still served once more. Each answer carries an `ETag`
//! naming its version, and `If-None-Match` with it gets `304` without a body. Paged answers
//! and single registers are small and serialized per request.
//!
//! Without query parameters the answer is the complete JSON array, as the service this
//! replaces served it. Nothing here decides what is available (the pool does).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::OnceCell;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::task::AbortOnDropHandle;

use herald_actors::View;

use herald_messages::{AvailableRegister, AvailableRegisters, AvailableView, PoolView, RegisterId};

use crate::rest::RestState;
use crate::rest::error::ApiError;
use crate::rest::extract::PathId;

/// Most registers one page may hold.
pub const MAX_PAGE_LIMIT: usize = 10_000;

/// How long the encodings of an answer are kept when no request sends them: clients that poll
/// with `If-None-Match` get `304` without them, and a node nobody reads the answer of does not
/// hold it (23 MB at 100,000 registers, issue 11's memory goal).
pub const KEPT_WHILE_UNSENT: Duration = Duration::from_secs(60);

/// The encodings of the latest version of the answer, made on demand, once each, and
/// forgotten when the pool publishes another version, when it applies a write to the answer
/// they were built on, or when none was sent for `KEPT_WHILE_UNSENT` (by a task following the
/// pool's views, stopped when the cache is dropped).
pub struct AvailableCache {
    latest: Arc<Mutex<Option<Arc<Encoded>>>>,
    _follower: Option<AbortOnDropHandle<()>>,
}

/// One version of the answer, encoded.
struct Encoded {
    tag: u64,
    version: u64,
    /// The version of the pool's own answer this one is built on (its own, when the answer is
    /// the pool's).
    built_on: (u64, u64),
    etag: HeaderValue,
    json: OnceCell<Bytes>,
    gzip: OnceCell<Bytes>,
    /// When a request last took these bytes to send (or they were made).
    last_sent: Mutex<Instant>,
}

impl AvailableCache {
    /// An empty cache following the answers readers are served (`pool`) and, on a node in a
    /// cluster, the pool's own publications of each write (`writes`: `NodeApi::pool_writes`);
    /// nothing to follow on a node without the peer role. Call inside a Tokio runtime.
    pub fn start(pool: Option<View<PoolView>>, writes: Option<View<PoolView>>) -> Self {
        let latest = Arc::default();
        let follower = pool.map(|pool| {
            AbortOnDropHandle::new(tokio::spawn(forget_unwanted(
                pool,
                writes,
                Arc::clone(&latest),
            )))
        });
        Self {
            latest,
            _follower: follower,
        }
    }

    /// The encodings held now (tests).
    #[cfg(test)]
    fn held(&self) -> Option<(u64, u64)> {
        let latest = self
            .latest
            .lock()
            .expect("no code panics holding this lock");
        latest
            .as_ref()
            .map(|encoded| (encoded.tag, encoded.version))
    }

    /// The encodings of `view`'s version: those already made, or a new empty set (which
    /// replaces an older version's).
    fn encoded(&self, view: &AvailableView) -> Arc<Encoded> {
        let mut latest = self
            .latest
            .lock()
            .expect("no code panics holding this lock");
        if let Some(encoded) = latest
            .as_ref()
            .filter(|e| e.tag == view.tag && e.version == view.version)
        {
            return Arc::clone(encoded);
        }
        let encoded = Arc::new(Encoded {
            tag: view.tag,
            version: view.version,
            etag: HeaderValue::from_str(&view.etag()).expect("an etag is visible ASCII"),
            built_on: view
                .base()
                .map_or((view.tag, view.version), |base| (base.tag, base.version)),
            json: OnceCell::new(),
            gzip: OnceCell::new(),
            last_sent: Mutex::new(Instant::now()),
        });
        // Two versions read at once: keep the newer.
        let keep = latest
            .as_ref()
            .is_none_or(|held| held.tag != view.tag || held.version < view.version);
        if keep {
            *latest = Some(Arc::clone(&encoded));
        }
        encoded
    }
}

/// Drops the held encodings whenever the pool publishes an answer of another version, or a
/// write to the answer they were built on (the answer readers get next will differ: a node in
/// a cluster merges the write with the gossip a moment later, and the old bytes would be held
/// through the write), and when no request sent them for `KEPT_WHILE_UNSENT`; requests still
/// sending them keep their bytes until they are sent.
async fn forget_unwanted(
    mut pool: View<PoolView>,
    mut writes: Option<View<PoolView>>,
    latest: Arc<Mutex<Option<Arc<Encoded>>>>,
) {
    let mut check = tokio::time::interval(KEPT_WHILE_UNSENT / 4);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let write = async {
            match writes.as_mut() {
                Some(writes) => writes.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            written = write => {
                let Some(written) = written else {
                    writes = None;
                    continue;
                };
                let written = (written.available.tag, written.available.version);
                let mut latest = latest.lock().expect("no code panics holding this lock");
                if latest.as_ref().is_some_and(|encoded| encoded.built_on != written) {
                    *latest = None;
                }
            }
            view = pool.changed() => {
                let Some(view) = view else { return };
                let mut latest = latest.lock().expect("no code panics holding this lock");
                let replaced = latest.as_ref().is_some_and(|encoded| {
                    encoded.tag != view.available.tag || encoded.version != view.available.version
                });
                if replaced {
                    *latest = None;
                }
            }
            _ = check.tick() => {
                let mut latest = latest.lock().expect("no code panics holding this lock");
                if latest.as_ref().is_some_and(|encoded| encoded.unsent_for() >= KEPT_WHILE_UNSENT) {
                    *latest = None;
                }
            }
        }
    }
}

impl Encoded {
    fn unsent_for(&self) -> Duration {
        self.last_sent
            .lock()
            .expect("no code panics holding this lock")
            .elapsed()
    }

    fn sent(&self) {
        *self
            .last_sent
            .lock()
            .expect("no code panics holding this lock") = Instant::now();
    }

    async fn json(&self, view: &AvailableView) -> Bytes {
        self.sent();
        self.json
            .get_or_init(|| async {
                let json = encode(view.iter());
                metrics::counter!("herald_rest_available_encodings_total", "encoding" => "json")
                    .increment(1);
                Bytes::from(json)
            })
            .await
            .clone()
    }

    async fn gzip(&self, view: &AvailableView) -> Bytes {
        // Through `json`, which counts as sent.
        let json = self.json(view).await;
        self.gzip
            .get_or_init(|| async {
                metrics::counter!("herald_rest_available_encodings_total", "encoding" => "gzip")
                    .increment(1);
                gzip(&json)
            })
            .await
            .clone()
    }
}

/// The JSON array of `registers`, in a buffer sized once from the registers' text (a buffer
/// grown by doubling held up to twice the answer, and 1.5 times more while it was copied on a
/// growth: tens of MB at 100,000 registers), trimmed to its length.
fn encode(registers: AvailableRegisters<'_>) -> Vec<u8> {
    /// Bytes of a register without its name and description: field names, an id, numbers.
    const FIXED: usize = 256;
    let estimate: usize = registers
        .clone()
        .map(|register| {
            FIXED
                + register.name.as_deref().map_or(0, str::len)
                + register.description.as_deref().map_or(0, str::len)
        })
        .sum();
    let mut json = Vec::with_capacity(estimate + 2);
    serde_json::to_writer(&mut json, &registers).expect("available registers always serialize");
    json.shrink_to_fit();
    json
}

/// `GET /api/registers/available`: the whole answer (built once per version, `ETag`, `304`,
/// gzip), or one page of it with `?limit=N&after=registerId`.
pub async fn available(
    State(state): State<RestState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let paging = Paging::parse(query.as_deref())?;
    let pool = state.api.pool_view().await?;
    let partitioned = pool.status.gossip.as_ref().map(|gossip| gossip.partitioned);
    let view = Arc::clone(&pool.available);
    drop(pool);
    if let Some(paging) = paging {
        return Ok(with_partitioned(page(&view, &paging), partitioned));
    }
    let encoded = state.available.encoded(&view);
    if none_match(&headers, &encoded.etag) {
        return Ok(with_partitioned(not_modified(&encoded.etag), partitioned));
    }
    let (body, gzipped) = if accepts_gzip(&headers) {
        (encoded.gzip(&view).await, true)
    } else {
        (encoded.json(&view).await, false)
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::ETAG, encoded.etag.clone());
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if gzipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(with_partitioned(response, partitioned))
}

/// The header that says whether this node is cut off from much of the cluster (issue 9:
/// partitioned mode, the stale remote ads shown), on a node that runs the gossip.
pub const PARTITIONED_HEADER: &str = "x-herald-partitioned";

fn with_partitioned(mut response: Response, partitioned: Option<bool>) -> Response {
    if let Some(partitioned) = partitioned {
        response.headers_mut().insert(
            PARTITIONED_HEADER,
            HeaderValue::from_static(if partitioned { "true" } else { "false" }),
        );
    }
    response
}

/// `GET /api/registers/available/{registerId}`: one available register; 404 when none of its
/// advertisements is live and public.
pub async fn available_one(
    State(state): State<RestState>,
    PathId(register_id): PathId<RegisterId>,
) -> Result<Json<AvailableRegister>, ApiError> {
    let view = state.api.available_view().await?;
    match view.get(&register_id) {
        Some(register) => Ok(Json(register.clone())),
        None => Err(ApiError::not_found(format!(
            "register {register_id} is not available: no live public advertisement of it"
        ))),
    }
}

/// `?limit=N&after=registerId`: both optional, at least one present.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Paging {
    limit: usize,
    after: Option<RegisterId>,
}

impl Paging {
    /// `None` without a query (the whole answer).
    fn parse(query: Option<&str>) -> Result<Option<Paging>, ApiError> {
        let Some(query) = query.filter(|q| !q.is_empty()) else {
            return Ok(None);
        };
        let mut paging = Paging {
            limit: MAX_PAGE_LIMIT,
            after: None,
        };
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "limit" => paging.limit = parse_limit(value)?,
                "after" => {
                    let after = RegisterId::parse(value).map_err(|err| {
                        ApiError::invalid("after", format!("{value:?} is not a register id: {err}"))
                    })?;
                    paging.after = Some(after);
                }
                other => {
                    return Err(ApiError::invalid(
                        other,
                        "unknown query parameter; this route takes limit and after",
                    ));
                }
            }
        }
        Ok(Some(paging))
    }
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    let reason = || format!("must be a whole number from 1 to {MAX_PAGE_LIMIT}, got {value:?}");
    let limit: usize = value
        .parse()
        .map_err(|_| ApiError::invalid("limit", reason()))?;
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::invalid("limit", reason()));
    }
    Ok(limit)
}

/// One page: a JSON array like the whole answer; a `Link` header names the next page when
/// more follow.
fn page(view: &AvailableView, paging: &Paging) -> Response {
    let (registers, more) = view.page(paging.after.as_ref(), paging.limit);
    let mut response = Json(&registers).into_response();
    if let (true, Some(last)) = (more, registers.last()) {
        let next = format!(
            "</api/registers/available?limit={}&after={}>; rel=\"next\"",
            paging.limit, last.register_id
        );
        response.headers_mut().insert(
            header::LINK,
            HeaderValue::from_str(&next).expect("a link of digits and hex is a header value"),
        );
    }
    response
}

fn not_modified(etag: &HeaderValue) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response.headers_mut().insert(header::ETAG, etag.clone());
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

/// Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 asks for `GET`) or is
/// `*`.
fn none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == ours)
}

/// Whether `Accept-Encoding` allows gzip: named (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let refused = parts.any(|param| {
            let param = param.trim().to_ascii_lowercase();
            param
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(!refused);
        } else if name == "*" {
            any = Some(!refused);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// gzip at the fastest level: made once per version, it must not hold up the first reader.
fn gzip(json: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 8),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(json)
        .expect("writing to a Vec never fails");
    Bytes::from(encoder.finish().expect("writing to a Vec never fails"))
}

#[cfg(test)]
mod tests {
    use herald_actors::Published;
    use herald_messages::NodeId;

    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(name, HeaderValue::from_str(value).unwrap());
        map
    }

    #[test]
    fn gzip_is_accepted_when_named_or_starred_without_q_zero() {
        let accepts = |value| accepts_gzip(&headers(header::ACCEPT_ENCODING, value));
        assert!(accepts("gzip"));
        assert!(accepts("br, gzip;q=0.5, deflate"));
        assert!(accepts("*"));
        assert!(accepts("GZIP"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br"));
        assert!(!accepts("*, gzip;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let etag = HeaderValue::from_static("\"00000000000000ab-3\"");
        let matches = |value| none_match(&headers(header::IF_NONE_MATCH, value), &etag);
        assert!(matches("\"00000000000000ab-3\""));
        assert!(matches("\"x\", W/\"00000000000000ab-3\""));
        assert!(matches("*"));
        assert!(!matches("\"00000000000000ab-2\""));
        assert!(!none_match(&HeaderMap::new(), &etag));
    }

    #[test]
    fn paging_parses_limit_and_after_and_refuses_the_rest() {
        assert_eq!(Paging::parse(None).unwrap(), None);
        assert_eq!(Paging::parse(Some("")).unwrap(), None);
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            Paging::parse(Some(&format!("limit=5&after={id}"))).unwrap(),
            Some(Paging {
                limit: 5,
                after: Some(RegisterId::parse(id).unwrap()),
            })
        );
        assert_eq!(
            Paging::parse(Some("limit=0")).unwrap_err().field(),
            Some("limit")
        );
        assert_eq!(
            Paging::parse(Some("limit=10001")).unwrap_err().field(),
            Some("limit")
        );
        assert_eq!(
            Paging::parse(Some("limit=ten")).unwrap_err().field(),
            Some("limit")
        );
        assert_eq!(
            Paging::parse(Some("after=XYZ")).unwrap_err().field(),
            Some("after")
        );
        assert_eq!(
            Paging::parse(Some("offset=3")).unwrap_err().field(),
            Some("offset")
        );
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read;
        let json = br#"[{"registerId":"x"}]"#.repeat(100);
        let packed = gzip(&json);
        assert!(packed.len() < json.len());
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, json);
    }

    /// Lets the cache's follower (on this single-threaded runtime) take what was published.
    async fn let_the_follower_run() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn the_encodings_are_dropped_when_the_pool_publishes_another_version() {
        let published = Published::new(PoolView::starting(NodeId::parse("me").unwrap(), 7));
        let cache = AvailableCache::start(Some(published.view()), None);
        let first = published.latest();
        let encoded = cache.encoded(&first.available);
        assert_eq!(&encoded.json(&first.available).await[..], b"[]");
        drop(encoded);
        assert_eq!(cache.held(), Some((7, 0)));
        // The same answer republished (the status changed): the bytes stay.
        let mut same = (*first).clone();
        same.status.dirty_ads = 3;
        published.publish(same);
        let_the_follower_run().await;
        assert_eq!(cache.held(), Some((7, 0)));
        // Another version: gone, before anyone asks for it.
        let mut next = (*first).clone();
        next.available = Arc::new(AvailableView::new(7, 1, Vec::new()));
        published.publish(next);
        let_the_follower_run().await;
        assert_eq!(cache.held(), None);
    }

    #[tokio::test]
    async fn in_a_cluster_the_encodings_are_dropped_when_the_pool_applies_a_write() {
        let me = NodeId::parse("me").unwrap();
        // The pool's own answer, and the gossip's merge laid over it, which readers get.
        let own = Published::new(PoolView::starting(me.clone(), 7));
        let merged = Published::new(PoolView::starting(me, 9));
        let mut over = (*merged.latest()).clone();
        over.available = Arc::new(AvailableView::over(
            Arc::clone(&own.latest().available),
            9,
            4,
            Vec::new(),
        ));
        merged.publish(over);
        let cache = AvailableCache::start(Some(merged.view()), Some(own.view()));
        let served = merged.latest();
        let _ = cache
            .encoded(&served.available)
            .json(&served.available)
            .await;
        assert_eq!(cache.held(), Some((9, 4)));
        // The pool republishes its answer unchanged (its status changed): the bytes stay.
        let mut same = (*own.latest()).clone();
        same.status.dirty_ads = 3;
        own.publish(same);
        let_the_follower_run().await;
        assert_eq!(cache.held(), Some((9, 4)));
        // The pool applies a write: the merge readers get next differs, so the bytes go now,
        // not when the gossip publishes it.
        let mut written = (*own.latest()).clone();
        written.available = Arc::new(AvailableView::new(7, 1, Vec::new()));
        own.publish(written);
        let_the_follower_run().await;
        assert_eq!(cache.held(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn encodings_nobody_sends_are_dropped_after_a_while_and_sending_keeps_them() {
        let published = Published::new(PoolView::starting(NodeId::parse("me").unwrap(), 7));
        let cache = AvailableCache::start(Some(published.view()), None);
        let view = published.latest();
        let _ = cache.encoded(&view.available).gzip(&view.available).await;
        // Sent every 40 s for a few minutes: kept.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            let_the_follower_run().await;
            assert_eq!(cache.held(), Some((7, 0)), "sent within the last minute");
            let _ = cache.encoded(&view.available).json(&view.available).await;
        }
        // Then nobody asks: gone within a minute and a quarter.
        tokio::time::sleep(KEPT_WHILE_UNSENT + KEPT_WHILE_UNSENT / 4).await;
        let_the_follower_run().await;
        assert_eq!(cache.held(), None);
        // The next reader encodes them again.
        let encoded = cache.encoded(&view.available);
        assert_eq!(&encoded.json(&view.available).await[..], b"[]");
        assert_eq!(cache.held(), Some((7, 0)));
    }
}
