//! A fake server listening on a Unix domain socket too ([`FakeServer::listen_unix`]): each
//! connection accepted there is served by the server as if it had come over TCP (its bytes are
//! relayed to the server's TCP port, and back), so everything the server does (commands,
//! faults, kills) applies to it alike.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::FakeServer;

/// The Unix socket a [`FakeServer`] listens on. Dropping it stops listening, closes the
/// connections made through it and removes the socket file.
#[derive(Debug)]
pub struct UnixSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<UnixStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl UnixSocket {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection string for the socket: `mongodb://<percent-encoded path>/?directConnection=true`.
    pub fn uri(&self) -> String {
        let encoded: String = self
            .path
            .to_string_lossy()
            .bytes()
            .map(|b| match b {
                b'/' => "%2F".to_string(),
                b'%' => "%25".to_string(),
                b':' => "%3A".to_string(),
                b => (b as char).to_string(),
            })
            .collect();
        format!("mongodb://{encoded}/?directConnection=true")
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for s in self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl FakeServer {
    /// Also listens on the Unix domain socket `path` (which must not exist; its name should end
    /// in `.sock`, as connection strings require).
    pub fn listen_unix(&self, path: impl AsRef<Path>) -> io::Result<UnixSocket> {
        let path = path.as_ref().to_path_buf();
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let live = Arc::new(Mutex::new(Vec::new()));
        let tcp = self.addr();
        let (stop2, live2) = (stop.clone(), live.clone());
        let thread = std::thread::Builder::new()
            .name("testkit-unix-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(tcp) else {
                        // The server is down: the client sees its connection closed.
                        continue;
                    };
                    let _ = server.set_nodelay(true);
                    if let Ok(c) = client.try_clone() {
                        live2.lock().unwrap_or_else(|p| p.into_inner()).push(c);
                    }
                    relay(client, server);
                }
            })?;
        Ok(UnixSocket {
            path,
            stop,
            live,
            thread: Some(thread),
        })
    }
}

/// Copies bytes both ways until either side closes, then closes the other.
fn relay(client: UnixStream, server: TcpStream) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    pump(client, server, |s| s.shutdown(Shutdown::Write));
    pump(server2, client2, |s| s.shutdown(Shutdown::Write));
}

fn pump<R, W>(mut from: R, mut to: W, close: fn(&W) -> io::Result<()>)
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    let _ = std::thread::Builder::new()
        .name("testkit-unix-relay".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = close(&to);
        });
}
