//! A fake Stripe on 127.0.0.1 (hyper), for `meter stripe push` tests. It
//! checks every request the way Stripe does (formats.md section 4) and
//! keeps what it accepted:
//!
//! - `POST /v1/billing/meter_events` (form, Bearer secret key);
//! - `POST /v2/billing/meter_event_session` (Bearer secret key) and
//!   `POST /v2/billing/meter_event_stream` (JSON, Bearer session token, at
//!   most 100 events);
//! - `POST /v1/invoiceitems` (form, Bearer secret key): pending, or on a
//!   draft invoice of the same customer and currency (`invoice`);
//! - `POST /v1/invoices` (a draft; `pending_invoice_items_behavior=exclude`
//!   or it sweeps the customer's pending items in, as Stripe does),
//!   `POST /v1/invoices/{id}/finalize` (a draft only: open, or paid at 0);
//! - `POST /v1/credit_notes` on a finalized invoice only, `custom_line_item`
//!   lines with a positive total of at most what is left to credit.
//!
//! Values must be whole numbers of at most 15 significant digits, timestamps
//! within 35 days before and 5 minutes after the `now` the test gives. A
//! duplicate identifier is refused (`An event already exists with
//! identifier ...`), except that a request replayed with the same
//! `Idempotency-Key` and the same parameters gets the original answer, as
//! Stripe does. A script of [`Fault`]s decides how the next requests go.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The only secret key the fake accepts.
pub const API_KEY: &str = "sk_test_51FakeMeterKey0123456789abcdefDoNotLeak";

/// How the next request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// As Stripe would answer.
    Pass,
    /// This status with a Stripe-shaped error; nothing is processed.
    Status(u16),
    /// 429 with `Retry-After: <seconds>`; nothing is processed.
    RetryAfter(u64),
    /// Processed (what it accepts is kept), then the connection is dropped
    /// without an answer.
    AcceptThenDrop,
    /// The connection is dropped without an answer; nothing is processed.
    Drop,
    /// Every session token expires, then the request is processed.
    ExpireSessions,
}

/// One request, as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub path: String,
    /// `None`: the connection was dropped without an answer.
    pub status: Option<u16>,
    /// The identifiers (meter events) or idempotency key (invoice items) it
    /// carried.
    pub keys: Vec<String>,
    pub idempotency_key: Option<String>,
    /// An idempotent replay of an earlier answer.
    pub replayed: bool,
}

/// An accepted meter event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub identifier: String,
    pub customer: String,
    pub event_name: String,
    pub value: i64,
    pub timestamp: i64,
}

/// An accepted invoice item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    pub idempotency_key: Option<String>,
    pub customer: String,
    pub amount: i64,
    pub currency: String,
    pub description: String,
    /// The draft it was added to; `None`: pending, for the next invoice.
    pub invoice: Option<String>,
}

/// An invoice made with `POST /v1/invoices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: String,
    pub customer: String,
    pub currency: String,
    /// `draft`, `open` or `paid`.
    pub status: String,
    /// `metadata[meter_invoice]`.
    pub meter_invoice: String,
    /// Its items' amounts, in the order added.
    pub lines: Vec<i64>,
    /// Credited by credit notes so far.
    pub credited: i64,
}

impl Invoice {
    pub fn total(&self) -> i64 {
        self.lines.iter().sum()
    }
}

/// A credit note made with `POST /v1/credit_notes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditNote {
    pub id: String,
    pub invoice: String,
    pub amount: i64,
    pub memo: String,
}

#[derive(Default)]
struct State {
    now: i64,
    script: VecDeque<Fault>,
    events: BTreeMap<String, Event>,
    /// How often each identifier was accepted as new (1, or a bug).
    accepted: BTreeMap<String, usize>,
    items: Vec<Item>,
    invoices: BTreeMap<String, Invoice>,
    credit_notes: Vec<CreditNote>,
    /// Idempotency key -> (path and body, status, answer).
    idempotent: HashMap<String, (Vec<u8>, u16, String)>,
    sessions: HashSet<String>,
    sessions_opened: usize,
    log: Vec<Logged>,
}

/// A running fake; stopped when dropped.
pub struct FakeStripe {
    /// `http://127.0.0.1:<port>`: the push's base URL.
    pub url: String,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl FakeStripe {
    /// Starts a fake whose clock says `now`, on a random port (bound before
    /// this returns).
    pub fn start(now: DateTime<Utc>) -> FakeStripe {
        let state = Arc::new(Mutex::new(State {
            now: now.timestamp(),
            ..State::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-stripe")
            .enable_all()
            .build()
            .unwrap();
        let shared = state.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    // A dropped connection ends here with an error: expected.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        FakeStripe {
            url,
            state,
            runtime: Some(runtime),
        }
    }

    /// Queues faults for the next requests, after those already queued.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Accepted events by identifier.
    pub fn events(&self) -> BTreeMap<String, Event> {
        self.state.lock().unwrap().events.clone()
    }

    /// How often each identifier was accepted as new.
    pub fn accept_counts(&self) -> BTreeMap<String, usize> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// Accepted value per (Stripe customer, event name).
    pub fn totals(&self) -> BTreeMap<(String, String), i64> {
        let mut out = BTreeMap::new();
        for e in self.state.lock().unwrap().events.values() {
            *out.entry((e.customer.clone(), e.event_name.clone()))
                .or_default() += e.value;
        }
        out
    }

    pub fn items(&self) -> Vec<Item> {
        self.state.lock().unwrap().items.clone()
    }

    /// Invoices by id.
    pub fn invoices(&self) -> BTreeMap<String, Invoice> {
        self.state.lock().unwrap().invoices.clone()
    }

    pub fn credit_notes(&self) -> Vec<CreditNote> {
        self.state.lock().unwrap().credit_notes.clone()
    }

    /// Forgets the idempotency keys (Stripe keeps them about 24 hours).
    pub fn forget_idempotency(&self) {
        self.state.lock().unwrap().idempotent.clear();
    }

    pub fn sessions_opened(&self) -> usize {
        self.state.lock().unwrap().sessions_opened
    }
}

/// Why the connection is dropped.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dropped by the test script")
    }
}

impl std::error::Error for Dropped {}

/// An answer: status, JSON body, extra headers, the keys it concerns.
struct Answer {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    keys: Vec<String>,
    replayed: bool,
}

impl Answer {
    fn ok(body: Value, keys: Vec<String>) -> Answer {
        Answer {
            status: 200,
            body: body.to_string(),
            headers: Vec::new(),
            keys,
            replayed: false,
        }
    }

    fn error(status: u16, kind: &str, message: impl Into<String>, keys: Vec<String>) -> Answer {
        let body = json!({"error": {"type": kind, "message": message.into()}});
        Answer {
            status,
            body: body.to_string(),
            headers: Vec::new(),
            keys,
            replayed: false,
        }
    }

    fn invalid(message: impl Into<String>, keys: Vec<String>) -> Answer {
        Answer::error(400, "invalid_request_error", message, keys)
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<String>, Dropped> {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let headers = req.headers().clone();
    let body = read_body(req.into_body()).await;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request = Received {
        method,
        path: path.clone(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        idempotency_key: header("idempotency-key"),
        body,
    };
    let mut state = state.lock().unwrap();
    let fault = state.script.pop_front().unwrap_or(Fault::Pass);
    let answer = match fault {
        Fault::Pass => state.process(&request),
        Fault::ExpireSessions => {
            state.sessions.clear();
            state.process(&request)
        }
        Fault::Status(status) => {
            let kind = match status {
                429 => "rate_limit_error",
                s if s >= 500 => "api_error",
                _ => "invalid_request_error",
            };
            Answer::error(status, kind, format!("injected {status}"), Vec::new())
        }
        Fault::RetryAfter(seconds) => {
            let mut a = Answer::error(429, "rate_limit_error", "Too many requests", Vec::new());
            a.headers.push(("retry-after", seconds.to_string()));
            a
        }
        Fault::Drop | Fault::AcceptThenDrop => {
            let keys = match fault {
                Fault::AcceptThenDrop => state.process(&request).keys,
                _ => Vec::new(),
            };
            state.log.push(Logged {
                path,
                status: None,
                keys,
                idempotency_key: request.idempotency_key.clone(),
                replayed: false,
            });
            return Err(Dropped);
        }
    };
    state.log.push(Logged {
        path,
        status: Some(answer.status),
        keys: answer.keys.clone(),
        idempotency_key: request.idempotency_key.clone(),
        replayed: answer.replayed,
    });
    let mut response = Response::builder()
        .status(answer.status)
        .header("content-type", "application/json");
    for (name, value) in answer.headers {
        response = response.header(name, value);
    }
    if answer.replayed {
        response = response.header("idempotent-replayed", "true");
    }
    Ok(response.body(answer.body).unwrap())
}

/// A request, read whole.
struct Received {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    idempotency_key: Option<String>,
    body: Vec<u8>,
}

impl Received {
    fn bearer(&self) -> Option<&str> {
        self.authorization.as_deref()?.strip_prefix("Bearer ")
    }

    fn is_form(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    }

    fn is_json(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
    }
}

async fn read_body(mut body: Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Err(_) => break,
        }
    }
    out
}

impl State {
    fn process(&mut self, req: &Received) -> Answer {
        if req.method != "POST" {
            return Answer::error(405, "invalid_request_error", "POST only", Vec::new());
        }
        let session = req.path == "/v2/billing/meter_event_stream";
        if let Some(refusal) = self.authenticate(req, session) {
            return refusal;
        }
        // Idempotent replays: the same key with the same parameters gets
        // the first answer; other parameters are an error.
        let fingerprint = [req.path.as_bytes(), b"\n", &req.body].concat();
        if let Some(key) = &req.idempotency_key
            && let Some((seen, status, body)) = self.idempotent.get(key)
        {
            if *seen != fingerprint {
                return Answer::error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    vec![key.clone()],
                );
            }
            return Answer {
                status: *status,
                body: body.clone(),
                headers: Vec::new(),
                keys: vec![key.clone()],
                replayed: true,
            };
        }
        let answer = match req.path.as_str() {
            "/v1/billing/meter_events" => self.meter_event_v1(req),
            "/v2/billing/meter_event_session" => self.open_session(),
            "/v2/billing/meter_event_stream" => self.stream(req),
            "/v1/invoiceitems" => self.invoice_item(req),
            "/v1/invoices" => self.create_invoice(req),
            "/v1/credit_notes" => self.credit_note(req),
            other if other.starts_with("/v1/invoices/") && other.ends_with("/finalize") => {
                let id = &other["/v1/invoices/".len()..other.len() - "/finalize".len()];
                self.finalize(id)
            }
            other => Answer::error(
                404,
                "invalid_request_error",
                format!("Unrecognized request URL (POST: {other})"),
                Vec::new(),
            ),
        };
        if answer.status == 200
            && let Some(key) = &req.idempotency_key
        {
            self.idempotent.insert(
                key.clone(),
                (fingerprint, answer.status, answer.body.clone()),
            );
        }
        answer
    }

    /// `None` when the request may go on.
    fn authenticate(&self, req: &Received, session: bool) -> Option<Answer> {
        let Some(token) = req.bearer() else {
            return Some(Answer::error(
                401,
                "invalid_request_error",
                "You did not provide an API key.",
                Vec::new(),
            ));
        };
        let ok = match session {
            true => self.sessions.contains(token),
            false => token == API_KEY,
        };
        match ok {
            true => None,
            // Unlike Stripe, the message echoes what was given whole, so a
            // client that does not redact it is caught.
            false => Some(Answer::error(
                401,
                "invalid_request_error",
                format!("Invalid API Key provided: {token}"),
                Vec::new(),
            )),
        }
    }

    fn meter_event_v1(&mut self, req: &Received) -> Answer {
        if !req.is_form() {
            return Answer::invalid("expected a form-encoded body", Vec::new());
        }
        let form = parse_form(&req.body);
        let field = |name: &str| form.get(name).cloned();
        let identifier = field("identifier").unwrap_or_default();
        let keys = vec![identifier.clone()];
        for required in [
            "event_name",
            "payload[stripe_customer_id]",
            "payload[value]",
            "identifier",
            "timestamp",
        ] {
            if field(required).is_none_or(|v| v.is_empty()) {
                return Answer::invalid(format!("Missing required param: {required}."), keys);
            }
        }
        if req.idempotency_key.as_deref() != Some(identifier.as_str()) {
            return Answer::invalid("meter expects Idempotency-Key = identifier", keys);
        }
        let event = match self.check_event(
            &identifier,
            &field("event_name").unwrap(),
            &field("payload[stripe_customer_id]").unwrap(),
            &field("payload[value]").unwrap(),
            field("timestamp").unwrap().parse::<i64>().ok(),
        ) {
            Ok(e) => e,
            Err(message) => return Answer::invalid(message, keys),
        };
        if self.events.contains_key(&identifier) {
            return Answer::invalid(
                format!("An event already exists with identifier {identifier}."),
                keys,
            );
        }
        let body = json!({
            "object": "billing.meter_event",
            "created": self.now,
            "event_name": event.event_name,
            "identifier": identifier,
            "livemode": false,
            "payload": {"stripe_customer_id": event.customer, "value": event.value.to_string()},
            "timestamp": event.timestamp,
        });
        self.accept(event);
        Answer::ok(body, keys)
    }

    fn open_session(&mut self) -> Answer {
        self.sessions_opened += 1;
        let token = format!("ekst_test_session_{}", self.sessions_opened);
        self.sessions.insert(token.clone());
        let expires = DateTime::from_timestamp(self.now + 900, 0).unwrap();
        Answer::ok(
            json!({
                "object": "v2.billing.meter_event_session",
                "id": format!("mes_{}", self.sessions_opened),
                "authentication_token": token,
                "created": DateTime::from_timestamp(self.now, 0).unwrap().to_rfc3339(),
                "expires_at": expires.to_rfc3339(),
                "livemode": false,
            }),
            Vec::new(),
        )
    }

    fn stream(&mut self, req: &Received) -> Answer {
        if !req.is_json() {
            return Answer::invalid("expected a JSON body", Vec::new());
        }
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return Answer::invalid("the body is not JSON", Vec::new());
        };
        let Some(list) = body["events"].as_array() else {
            return Answer::invalid("Missing required param: events.", Vec::new());
        };
        let keys: Vec<String> = list
            .iter()
            .map(|e| e["identifier"].as_str().unwrap_or_default().to_string())
            .collect();
        if list.is_empty() || list.len() > 100 {
            return Answer::invalid(
                format!("events must hold 1 to 100 events, not {}", list.len()),
                keys,
            );
        }
        let mut accepted = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let text = |v: &Value| v.as_str().map(str::to_string);
            let (Some(identifier), Some(name), Some(customer), Some(value), Some(ts)) = (
                text(&e["identifier"]),
                text(&e["event_name"]),
                text(&e["payload"]["stripe_customer_id"]),
                text(&e["payload"]["value"]),
                text(&e["timestamp"]),
            ) else {
                return Answer::invalid(
                    format!("events[{i}]: a field is missing or not a string"),
                    keys,
                );
            };
            let timestamp = DateTime::parse_from_rfc3339(&ts)
                .ok()
                .map(|t| t.timestamp());
            let event = match self.check_event(&identifier, &name, &customer, &value, timestamp) {
                Ok(e) => e,
                Err(message) => return Answer::invalid(format!("events[{i}]: {message}"), keys),
            };
            let duplicate = self.events.contains_key(&identifier)
                || accepted.iter().any(|a: &Event| a.identifier == identifier);
            if duplicate {
                return Answer::invalid(
                    format!("An event already exists with identifier {identifier}."),
                    keys,
                );
            }
            accepted.push(event);
        }
        for e in accepted {
            self.accept(e);
        }
        Answer::ok(json!({}), keys)
    }

    fn invoice_item(&mut self, req: &Received) -> Answer {
        if !req.is_form() {
            return Answer::invalid("expected a form-encoded body", Vec::new());
        }
        let form = parse_form(&req.body);
        let keys: Vec<String> = req.idempotency_key.iter().cloned().collect();
        for required in ["customer", "amount", "currency", "description"] {
            if form.get(required).is_none_or(|v| v.is_empty()) {
                return Answer::invalid(format!("Missing required param: {required}."), keys);
            }
        }
        let Ok(amount) = form["amount"].parse::<i64>() else {
            return Answer::invalid(format!("Invalid integer: {}", form["amount"]), keys);
        };
        let currency = &form["currency"];
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Answer::invalid(format!("Invalid currency: {currency}"), keys);
        }
        if !form["customer"].starts_with("cus_") {
            return Answer::invalid(format!("No such customer: '{}'", form["customer"]), keys);
        }
        let invoice = form.get("invoice").filter(|v| !v.is_empty()).cloned();
        if let Some(id) = &invoice {
            let Some(inv) = self.invoices.get(id) else {
                return Answer::error(
                    404,
                    "invalid_request_error",
                    format!("No such invoice: '{id}'"),
                    keys,
                );
            };
            if inv.status != "draft" {
                return Answer::invalid(
                    format!(
                        "You can only add invoice items to draft invoices; {id} is {}.",
                        inv.status
                    ),
                    keys,
                );
            }
            if inv.customer != form["customer"] || &inv.currency != currency {
                return Answer::invalid(
                    format!("The invoice {id} is of another customer or currency."),
                    keys,
                );
            }
        }
        let item = Item {
            id: format!("ii_{}", self.items.len() + 1),
            idempotency_key: req.idempotency_key.clone(),
            customer: form["customer"].clone(),
            amount,
            currency: currency.clone(),
            description: form["description"].clone(),
            invoice: invoice.clone(),
        };
        if let Some(id) = &invoice {
            self.invoices
                .get_mut(id)
                .expect("checked")
                .lines
                .push(amount);
        }
        let body = json!({
            "id": item.id,
            "object": "invoiceitem",
            "amount": amount,
            "currency": item.currency,
            "customer": item.customer,
            "description": item.description,
        });
        self.items.push(item);
        Answer::ok(body, keys)
    }

    fn create_invoice(&mut self, req: &Received) -> Answer {
        if !req.is_form() {
            return Answer::invalid("expected a form-encoded body", Vec::new());
        }
        let form = parse_form(&req.body);
        let keys: Vec<String> = req.idempotency_key.iter().cloned().collect();
        let customer = form.get("customer").cloned().unwrap_or_default();
        if !customer.starts_with("cus_") {
            return Answer::invalid(format!("No such customer: '{customer}'"), keys);
        }
        let currency = form.get("currency").cloned().unwrap_or_default();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Answer::invalid(format!("Invalid currency: {currency}"), keys);
        }
        let id = format!("in_{}", self.invoices.len() + 1);
        let mut invoice = Invoice {
            id: id.clone(),
            customer: customer.clone(),
            currency: currency.clone(),
            status: "draft".into(),
            meter_invoice: form
                .get("metadata[meter_invoice]")
                .cloned()
                .unwrap_or_default(),
            lines: Vec::new(),
            credited: 0,
        };
        match form
            .get("pending_invoice_items_behavior")
            .map(String::as_str)
        {
            Some("exclude") => {}
            Some("include") | None => {
                // Stripe sweeps the customer's pending items in.
                for item in self.items.iter_mut().filter(|i| {
                    i.invoice.is_none() && i.customer == customer && i.currency == currency
                }) {
                    item.invoice = Some(id.clone());
                    invoice.lines.push(item.amount);
                }
            }
            Some(other) => {
                return Answer::invalid(
                    format!("Invalid pending_invoice_items_behavior: {other}"),
                    keys,
                );
            }
        }
        self.invoices.insert(id.clone(), invoice);
        Answer::ok(
            json!({"id": id, "object": "invoice", "status": "draft", "customer": customer, "currency": currency}),
            keys,
        )
    }

    fn finalize(&mut self, id: &str) -> Answer {
        let Some(inv) = self.invoices.get_mut(id) else {
            return Answer::error(
                404,
                "invalid_request_error",
                format!("No such invoice: '{id}'"),
                Vec::new(),
            );
        };
        if inv.status != "draft" {
            return Answer::invalid(
                format!(
                    "This invoice is already finalized, you can't re-finalize a non-draft invoice. ({id} is {})",
                    inv.status
                ),
                vec![id.to_string()],
            );
        }
        inv.status = match inv.total() > 0 {
            true => "open".into(),
            false => "paid".into(),
        };
        Answer::ok(
            json!({"id": id, "object": "invoice", "status": inv.status, "total": inv.total()}),
            vec![id.to_string()],
        )
    }

    fn credit_note(&mut self, req: &Received) -> Answer {
        if !req.is_form() {
            return Answer::invalid("expected a form-encoded body", Vec::new());
        }
        let form = parse_form(&req.body);
        let keys: Vec<String> = req.idempotency_key.iter().cloned().collect();
        let id = form.get("invoice").cloned().unwrap_or_default();
        let Some(inv) = self.invoices.get(&id) else {
            return Answer::error(
                404,
                "invalid_request_error",
                format!("No such invoice: '{id}'"),
                keys,
            );
        };
        if inv.status == "draft" {
            return Answer::invalid(
                format!(
                    "You can only create credit notes for finalized invoices; {id} is a draft."
                ),
                keys,
            );
        }
        let mut amount = 0i64;
        let mut n = 0;
        while let Some(kind) = form.get(&format!("lines[{n}][type]")) {
            if kind != "custom_line_item" {
                return Answer::invalid(
                    format!("lines[{n}][type]: only custom_line_item here"),
                    keys,
                );
            }
            let field = |f: &str| {
                form.get(&format!("lines[{n}][{f}]"))
                    .and_then(|v| v.parse::<i64>().ok())
            };
            let (Some(unit), Some(quantity)) = (field("unit_amount"), field("quantity")) else {
                return Answer::invalid(
                    format!("lines[{n}]: unit_amount and quantity are required"),
                    keys,
                );
            };
            if unit < 0 || quantity < 1 {
                return Answer::invalid(
                    format!("lines[{n}]: unit_amount must be >= 0, quantity >= 1"),
                    keys,
                );
            }
            amount += unit * quantity;
            n += 1;
        }
        if amount <= 0 {
            return Answer::invalid("A credit note must credit a positive amount.", keys);
        }
        let left = inv.total() - inv.credited;
        if amount > left {
            return Answer::invalid(
                format!(
                    "The credit note's total ({amount}) must be less than or equal to the invoice's amount left to credit ({left})."
                ),
                keys,
            );
        }
        let note = CreditNote {
            id: format!("cn_{}", self.credit_notes.len() + 1),
            invoice: id.clone(),
            amount,
            memo: form.get("memo").cloned().unwrap_or_default(),
        };
        self.invoices.get_mut(&id).expect("checked").credited += amount;
        let body = json!({"id": note.id, "object": "credit_note", "amount": amount, "invoice": id});
        self.credit_notes.push(note);
        Answer::ok(body, keys)
    }

    /// Stripe's checks on one event.
    fn check_event(
        &self,
        identifier: &str,
        event_name: &str,
        customer: &str,
        value: &str,
        timestamp: Option<i64>,
    ) -> Result<Event, String> {
        if identifier.is_empty() || identifier.len() > 100 {
            return Err(format!(
                "identifier must be 1 to 100 characters: {identifier}"
            ));
        }
        if event_name.is_empty() || event_name.len() > 100 {
            return Err("event_name must be 1 to 100 characters".into());
        }
        if !customer.starts_with("cus_") {
            return Err(format!("No such customer: '{customer}'"));
        }
        let digits = value.trim_start_matches('-').trim_start_matches('0');
        let Ok(parsed) = value.parse::<i64>() else {
            return Err(format!("payload[value] must be a whole number: {value}"));
        };
        if digits.len() > 15 {
            return Err(format!(
                "payload[value] must have at most 15 significant digits: {value}"
            ));
        }
        let Some(ts) = timestamp else {
            return Err("timestamp is not valid".into());
        };
        if ts < self.now - 35 * 86_400 {
            return Err(format!(
                "timestamp {ts} is too far in the past: events must be within the past 35 days"
            ));
        }
        if ts > self.now + 300 {
            return Err(format!(
                "timestamp {ts} is too far in the future: at most 5 minutes ahead"
            ));
        }
        Ok(Event {
            identifier: identifier.to_string(),
            customer: customer.to_string(),
            event_name: event_name.to_string(),
            value: parsed,
            timestamp: ts,
        })
    }

    fn accept(&mut self, event: Event) {
        *self.accepted.entry(event.identifier.clone()).or_default() += 1;
        self.events.insert(event.identifier.clone(), event);
    }
}

/// `a=b&c=d`, percent- and plus-decoded.
fn parse_form(body: &[u8]) -> HashMap<String, String> {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut parts = pair.splitn(2, |b| *b == b'=');
            let key = decode(parts.next().unwrap_or_default());
            let value = decode(parts.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

fn decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_fake_decodes_forms() {
    let form = parse_form(b"payload%5Bvalue%5D=-12&description=Usage+correction+%E2%82%AC&x=");
    assert_eq!(form["payload[value]"], "-12");
    assert_eq!(form["description"], "Usage correction €");
    assert_eq!(form["x"], "");
}

/// The fake refuses what Stripe refuses for invoices and credit notes: an
/// item on a finalized invoice, a second finalization, a credit note on a
/// draft or above what is left to credit; a draft made without
/// `pending_invoice_items_behavior=exclude` sweeps pending items in.
#[test]
fn the_fake_keeps_stripes_rules_for_invoices_and_credit_notes() {
    use meter::cron::stripe::client::{Answer as Got, Auth, Body, Client, Refusal, Request};
    use meter::cron::stripe::{ApiKey, Retry};

    let fake = FakeStripe::start(Utc::now());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let retry = Retry {
        max_attempts: 1,
        ..Retry::default()
    };
    let mut client = Client::new(&fake.url, ApiKey::new(API_KEY), retry).unwrap();
    let mut n = 0;
    let mut send = |path: String, form: &[(&str, &str)]| -> Result<Value, String> {
        n += 1;
        let request = Request {
            path: path.into(),
            auth: Auth::Key,
            idempotency_key: Some(format!("k{n}")),
            body: Body::Form(
                form.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        };
        match runtime.block_on(client.send(&request)) {
            Ok(Got::Accepted(body)) => Ok(body),
            Ok(Got::AlreadyExists) => Err("already exists".into()),
            Err(Refusal::Rejected { message, .. } | Refusal::Exhausted { message, .. }) => {
                Err(message)
            }
        }
    };
    let item = |invoice: &'static str, amount: &'static str| {
        vec![
            ("customer", "cus_A"),
            ("amount", amount),
            ("currency", "eur"),
            ("description", "x"),
            ("invoice", invoice),
        ]
    };
    // A pending item, then a draft that leaves it out.
    send("/v1/invoiceitems".into(), &item("", "-300")).unwrap();
    let draft = |behavior: &'static str| {
        vec![
            ("customer", "cus_A"),
            ("currency", "eur"),
            ("pending_invoice_items_behavior", behavior),
        ]
    };
    let inv = send("/v1/invoices".into(), &draft("exclude")).unwrap();
    let id = inv["id"].as_str().unwrap().to_string();
    let id: &'static str = Box::leak(id.into_boxed_str());
    send("/v1/invoiceitems".into(), &item(id, "1000")).unwrap();
    let credit = |amount: &'static str| {
        vec![
            ("invoice", id),
            ("lines[0][type]", "custom_line_item"),
            ("lines[0][quantity]", "1"),
            ("lines[0][unit_amount]", amount),
        ]
    };
    let err = send("/v1/credit_notes".into(), &credit("100")).unwrap_err();
    assert!(err.contains("finalized invoices"), "{err}");
    let fin = send(format!("/v1/invoices/{id}/finalize"), &[]).unwrap();
    assert_eq!(fin["status"], "open");
    let err = send(format!("/v1/invoices/{id}/finalize"), &[]).unwrap_err();
    assert!(err.contains("already finalized"), "{err}");
    let err = send("/v1/invoiceitems".into(), &item(id, "5")).unwrap_err();
    assert!(err.contains("draft invoices"), "{err}");
    let err = send("/v1/credit_notes".into(), &credit("1001")).unwrap_err();
    assert!(err.contains("left to credit (1000)"), "{err}");
    send("/v1/credit_notes".into(), &credit("600")).unwrap();
    let err = send("/v1/credit_notes".into(), &credit("401")).unwrap_err();
    assert!(err.contains("left to credit (400)"), "{err}");
    send("/v1/credit_notes".into(), &credit("400")).unwrap();
    let err = send("/v1/credit_notes".into(), &credit("0")).unwrap_err();
    assert!(err.contains("positive"), "{err}");
    assert_eq!(fake.invoices()[id].lines, [1000]);
    // Without `exclude`, the pending item is swept into the new draft.
    let swept = send("/v1/invoices".into(), &draft("include")).unwrap();
    let swept = swept["id"].as_str().unwrap();
    assert_eq!(fake.invoices()[swept].lines, [-300]);
    assert_eq!(fake.credit_notes().len(), 2);
}
