//! Drives a [`Lookup`] over a runtime: UDP datagrams through [`Runtime::bind_udp`], TCP
//! exchanges through [`Runtime::connect`], every wait bounded by the machine's deadlines on the
//! runtime's clock.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::proto::dns::{Answer, DnsError, Lookup, Transmit};
use crate::rt::{Datagram, DatagramExt, Runtime, RuntimeExt, StreamExt};

/// The receive buffer: queries ask for no more than 512 bytes over UDP (no EDNS), so an answer
/// longer than this is broken (and, cut to this length by the socket, fails to decode).
const UDP_BUFFER: usize = 4096;

/// Runs `lookup` to its end.
pub(crate) async fn run(
    runtime: &Arc<dyn Runtime>,
    mut lookup: Lookup,
) -> Result<Answer, DnsError> {
    // One socket per address family, kept for every try of this lookup (stale answers to an
    // earlier try are told apart by their id).
    let mut v4: Option<Box<dyn Datagram>> = None;
    let mut v6: Option<Box<dyn Datagram>> = None;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        if let Some(result) = lookup.poll_result() {
            return result;
        }
        let Some(transmit) = lookup.poll_transmit(runtime.now(), &mut rand::rng()) else {
            // Every transmit is awaited below until the lookup moves on, so a lookup that is
            // not over always has one due.
            return Err(DnsError::other(format!(
                "internal error: the lookup of '{}' stalled",
                lookup.name()
            )));
        };
        match transmit {
            Transmit::Udp { server, message } => {
                let slot = if server.is_ipv4() { &mut v4 } else { &mut v6 };
                let socket = match slot {
                    Some(socket) => socket,
                    None => {
                        let any = if server.is_ipv4() {
                            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
                        } else {
                            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
                        };
                        match runtime.bind_udp(any).await {
                            Ok(socket) => slot.insert(socket),
                            Err(e) => {
                                lookup.handle_error(runtime.now(), format!("binding UDP: {e}"));
                                continue;
                            }
                        }
                    }
                };
                if let Err(e) = socket.send_to(&message, server).await {
                    lookup.handle_error(runtime.now(), format!("sending to {server}: {e}"));
                    continue;
                }
                while lookup.awaits_udp() {
                    let Some(deadline) = lookup.poll_timeout() else {
                        break;
                    };
                    match runtime
                        .timeout_at(deadline, socket.recv_from(&mut buf))
                        .await
                    {
                        Ok(Ok((n, from))) => lookup.handle_udp(runtime.now(), from, &buf[..n]),
                        Ok(Err(e)) => lookup
                            .handle_error(runtime.now(), format!("receiving from {server}: {e}")),
                        Err(_) => lookup.handle_timeout(at_least(runtime.now(), deadline)),
                    }
                }
            }
            Transmit::Tcp { server, message } => {
                let Some(deadline) = lookup.poll_timeout() else {
                    continue;
                };
                match runtime
                    .timeout_at(deadline, tcp_exchange(runtime, server, &message))
                    .await
                {
                    Ok(Ok(answer)) => lookup.handle_tcp(runtime.now(), &answer),
                    Ok(Err(e)) => {
                        lookup.handle_error(runtime.now(), format!("TCP to {server}: {e}"))
                    }
                    Err(_) => lookup.handle_timeout(at_least(runtime.now(), deadline)),
                }
            }
        }
    }
}

/// `now`, or `deadline` if the runtime's timer fired a hair early.
fn at_least(now: Instant, deadline: Instant) -> Instant {
    now.max(deadline)
}

/// Sends `message` (with its length prefix) over a new TCP connection to `server` and reads the
/// answer's length prefix and body.
async fn tcp_exchange(
    runtime: &Arc<dyn Runtime>,
    server: SocketAddr,
    message: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut stream = runtime.connect(server).await?;
    stream.write_all(message).await?;
    stream.flush().await?;
    let mut len = [0u8; 2];
    read_exact(&mut stream, &mut len).await?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_exact(&mut stream, &mut answer).await?;
    Ok(answer)
}

async fn read_exact(
    stream: &mut Box<dyn crate::rt::Stream>,
    mut buf: &mut [u8],
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = stream.read(buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the name server closed the connection mid-answer",
            ));
        }
        buf = &mut buf[n..];
    }
    Ok(())
}
