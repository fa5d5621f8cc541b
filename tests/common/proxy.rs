//! An HTTP/1.1 proxy on 127.0.0.1 that sits in front of an emulated service to see and shape what
//! a client does: it counts requests and the most in flight at once (one request per connection:
//! it forwards each request with `Connection: close`), answers planned faults instead of
//! forwarding (429 with Retry-After, 500, malformed JSON), throttles response bodies, and can
//! simulate an outage (in-flight responses cut mid-body, new connections closed unanswered).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A canned answer instead of the upstream's.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<u32>,
    pub body: String,
}

impl Fault {
    pub fn status(status: u16) -> Fault {
        Fault {
            status,
            retry_after: None,
            body: format!("{{\"code\":\"Fault\",\"description\":\"injected {status}\"}}"),
        }
    }
}

#[derive(Default)]
pub struct State {
    pub requests: AtomicUsize,
    pub faults_served: AtomicUsize,
    active: AtomicUsize,
    pub peak: AtomicUsize,
    /// Responses currently streaming a body (at least one body chunk forwarded).
    pub streaming: AtomicUsize,
    outage: AtomicBool,
    /// Faults for the next requests, in order.
    planned: Mutex<VecDeque<Fault>>,
    /// A fault for every request once `planned` is used up.
    always: Mutex<Option<Fault>>,
    /// Response body bytes per second, when throttled.
    throttle: Mutex<Option<usize>>,
}

pub struct Proxy {
    pub url: String,
    pub state: Arc<State>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    /// Proxies to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let up: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream http://127.0.0.1:PORT");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, up, st.clone()));
            }
        });
        Proxy {
            url,
            state,
            _rt: rt,
        }
    }

    pub fn plan(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.planned.lock().unwrap().extend(faults);
    }

    pub fn always(&self, fault: Option<Fault>) {
        *self.state.always.lock().unwrap() = fault;
    }

    pub fn throttle(&self, bytes_per_second: Option<usize>) {
        *self.state.throttle.lock().unwrap() = bytes_per_second;
    }

    /// Outage on: cut every response in flight and close new connections unanswered.
    pub fn set_outage(&self, on: bool) {
        self.state.outage.store(on, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.state.peak.load(Ordering::SeqCst)
    }
}

struct Active(Arc<State>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, st: Arc<State>) {
    let Some((head, body)) = read_request(&mut client).await else {
        return;
    };
    if st.outage.load(Ordering::SeqCst) {
        return; // closed unanswered, as by a dead server
    }
    st.requests.fetch_add(1, Ordering::SeqCst);
    let n = st.active.fetch_add(1, Ordering::SeqCst) + 1;
    st.peak.fetch_max(n, Ordering::SeqCst);
    let _active = Active(st.clone());
    let fault = {
        let planned = st.planned.lock().unwrap().pop_front();
        planned.or_else(|| st.always.lock().unwrap().clone())
    };
    if let Some(f) = fault {
        st.faults_served.fetch_add(1, Ordering::SeqCst);
        let mut resp = format!(
            "HTTP/1.1 {} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            f.status,
            f.body.len()
        );
        if let Some(s) = f.retry_after {
            resp.push_str(&format!("Retry-After: {s}\r\n"));
        }
        resp.push_str("\r\n");
        resp.push_str(&f.body);
        drop(_active);
        let _ = client.write_all(resp.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    if up.write_all(&close_connection(&head)).await.is_err() || up.write_all(&body).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 << 10];
    let mut streaming = false;
    // The request is over for the server once the response's head and Content-Length bytes are
    // forwarded (the server's closing of the connection may come later).
    let mut response = Response::default();
    let mut active = Some(_active);
    loop {
        if st.outage.load(Ordering::SeqCst) {
            break; // cut mid-response
        }
        let rate = *st.throttle.lock().unwrap();
        let want = rate.map_or(buf.len(), |r| (r / 20).clamp(1, buf.len()));
        let got = match up.read(&mut buf[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Out of flight before the client can see the last byte: a client that waits for a
        // response to end before sending the next request can never be counted twice.
        if response.forwarded(&buf[..got]) {
            active = None;
        }
        if client.write_all(&buf[..got]).await.is_err() {
            break;
        }
        if !streaming {
            streaming = true;
            st.streaming.fetch_add(1, Ordering::SeqCst);
        }
        if let Some(r) = rate {
            tokio::time::sleep(Duration::from_secs_f64(got as f64 / r as f64)).await;
        }
    }
    drop(active);
    if streaming {
        st.streaming.fetch_sub(1, Ordering::SeqCst);
    }
    if st.outage.load(Ordering::SeqCst) {
        // An abortive close (RST), like a crashed peer.
        let _ = client.set_zero_linger();
    }
}

/// Tracks how much of a response has been forwarded.
#[derive(Default)]
struct Response {
    head: Vec<u8>,
    /// Head length + Content-Length, once the head is complete.
    total: Option<usize>,
    seen: usize,
}

impl Response {
    /// Counts forwarded bytes; true once the whole response (head + body) has gone through.
    fn forwarded(&mut self, bytes: &[u8]) -> bool {
        self.seen += bytes.len();
        if self.total.is_none() && self.head.len() < 64 << 10 {
            self.head.extend_from_slice(bytes);
            if let Some(i) = self.head.windows(4).position(|w| w == b"\r\n\r\n") {
                let len = content_length(&self.head[..i + 4]);
                self.total = len.map(|n| i + 4 + n);
            }
        }
        self.total.is_some_and(|t| self.seen >= t)
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    })
}

/// Reads a request head and its Content-Length body.
async fn read_request(c: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..end].to_vec();
    let mut body = buf[end..].to_vec();
    let len = content_length(&head).unwrap_or(0);
    while body.len() < len {
        let n = c.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// The head with `Connection: close` (one request per connection, so connections = requests).
fn close_connection(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}
