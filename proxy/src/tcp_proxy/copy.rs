//! The byte copy of a proxied connection: both directions until both are done, a read EOF on
//! one side becoming a write shutdown on the other (half-close), the connection closed when no
//! byte moved for the idle timeout; with Istio's metadata exchange, each side's frame written
//! first and the other side's taken off the front of what is read.

use crate::io::Stream;
use crate::istio::mx::{parse, Front, PeerSlot};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The metadata exchange on each side of the connection.
#[derive(Default)]
pub struct Exchange {
    /// With the downstream (Ferry is the server): the client's frame is read off the
    /// downstream, Ferry's written to it.
    pub downstream: Option<PeerSlot>,
    /// With the upstream (Ferry is the client): Ferry's frame is written to the upstream, the
    /// server's read off it.
    pub upstream: Option<PeerSlot>,
    /// Bytes moved so far (downstream→upstream, upstream→downstream), for periodic reports.
    pub moved: Option<Arc<[AtomicU64; 2]>>,
}

/// One direction: where it reads and writes, the frame it writes first, the frame it strips.
struct Direction {
    first: Option<Vec<u8>>,
    strip: Option<PeerSlot>,
    moved: Option<(Arc<[AtomicU64; 2]>, usize)>,
}

/// Copies both ways until both are done. Returns (downstream→upstream bytes,
/// upstream→downstream bytes, closed for idleness).
pub async fn bidirectional(
    a: Stream,
    b: Stream,
    idle: Option<Duration>,
    x: Exchange,
) -> (u64, u64, bool) {
    let (server, client) = (x.downstream.is_some(), x.upstream.is_some());
    let frame = (server || client).then(crate::istio::mx::frame);
    let up = Direction {
        first: if client { frame.clone() } else { None },
        strip: x.downstream,
        moved: x.moved.clone().map(|m| (m, 0)),
    };
    let down = Direction {
        first: if server { frame } else { None },
        strip: x.upstream,
        moved: x.moved.map(|m| (m, 1)),
    };
    match (a, b) {
        // Plain TCP both ways: owned halves, no lock between the directions.
        (Stream::Plain(a), Stream::Plain(b)) => {
            let (ar, aw) = a.into_split();
            let (br, bw) = b.into_split();
            halves(ar, aw, br, bw, idle, up, down).await
        }
        (a, b) => {
            let (ar, aw) = tokio::io::split(a);
            let (br, bw) = tokio::io::split(b);
            halves(ar, aw, br, bw, idle, up, down).await
        }
    }
}

async fn halves<AR, AW, BR, BW>(
    ar: AR,
    aw: AW,
    br: BR,
    bw: BW,
    idle: Option<Duration>,
    up: Direction,
    down: Direction,
) -> (u64, u64, bool)
where
    AR: AsyncRead + Unpin + Send + 'static,
    AW: AsyncWrite + Unpin + Send + 'static,
    BR: AsyncRead + Unpin + Send + 'static,
    BW: AsyncWrite + Unpin + Send + 'static,
{
    let last = Arc::new(AtomicU64::new(crate::util::coarse_ms()));
    let up = tokio::spawn(pump(ar, bw, last.clone(), up));
    let down = tokio::spawn(pump(br, aw, last.clone(), down));
    let (ua, da) = (up.abort_handle(), down.abort_handle());
    let both = async { (up.await.unwrap_or(0), down.await.unwrap_or(0)) };
    let Some(idle) = idle else {
        let (x, y) = both.await;
        return (x, y, false);
    };
    let watchdog = async {
        loop {
            let since =
                Duration::from_millis(crate::util::coarse_ms().saturating_sub(last.load(Relaxed)));
            match idle.checked_sub(since).filter(|d| !d.is_zero()) {
                Some(left) => tokio::time::sleep(left).await,
                None => return,
            }
        }
    };
    tokio::select! {
        (x, y) = both => (x, y, false),
        () = watchdog => {
            ua.abort();
            da.abort();
            (0, 0, true)
        }
    }
}

fn resolve(slot: &PeerSlot, peer: Option<Box<crate::istio::Workload>>) {
    let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
    if s.is_none() {
        *s = Some(peer);
    }
}

async fn pump<R, W>(mut r: R, mut w: W, last: Arc<AtomicU64>, mut d: Direction) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Some(f) = d.first.take() {
        if w.write_all(&f).await.is_err() {
            return 0;
        }
    }
    // Large reads keep the syscall count per byte low on bulk streams.
    let mut buf = vec![0u8; 64 * 1024];
    let mut front: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        last.store(crate::util::coarse_ms(), Relaxed);
        let out: &[u8] = match &d.strip {
            None => &buf[..n],
            Some(slot) => {
                front.extend_from_slice(&buf[..n]);
                match parse(&front) {
                    Front::NeedMore => continue,
                    Front::Frame(len, peer) => {
                        resolve(slot, peer);
                        d.strip = None;
                        front.drain(..len);
                        &front
                    }
                    Front::NotMx => {
                        resolve(slot, None);
                        d.strip = None;
                        &front
                    }
                }
            }
        };
        // What is counted is what the application sent (an exchange frame is not).
        total += out.len() as u64;
        if let Some((m, i)) = &d.moved {
            m[*i].fetch_add(out.len() as u64, Relaxed);
        }
        if w.write_all(out).await.is_err() {
            return total;
        }
    }
    if let Some(slot) = &d.strip {
        // The stream ended inside what could have been a frame: those bytes are passed on.
        resolve(slot, None);
        let _ = w.write_all(&front).await;
    }
    let _ = w.shutdown().await;
    total
}
