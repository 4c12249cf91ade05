//! A connection's bytes, plain or inside TLS, as each side's threads read
//! and write them.
//!
//! **Server** ([`ServerStream`]): one thread owns the connection, so the
//! session is a plain value in that thread, driven by `Read` and `Write`
//! over the shared `&TcpStream`. Every close from outside (the reaper,
//! shutdown, the drain) still shuts the raw socket down: the blocked read
//! returns on every OS as it does for a plain connection (see
//! [`crate::wake`]), and the thread ends the same way.
//!
//! **Client** ([`ClientStream`]): a reader thread and a writer thread share
//! one session, and a blocked read must never hold up a write (a heartbeat
//! is due while the reader waits for the server). So neither blocks while
//! holding the session's lock:
//! - the reader blocks in `read` on the raw socket with no lock held, then
//!   takes the lock only to feed what arrived to the session and take out
//!   the plaintext (memory work, microseconds);
//! - the writer takes the lock only to encrypt its bytes and take out every
//!   TLS record the session has ready, then writes them to the socket with
//!   the lock released.
//!
//! Only the writer ever writes to the socket, so records go out in the
//! order they were sealed. What the session must send of its own accord
//! while reading (the answer to a TLS 1.3 KeyUpdate) waits in the session
//! and goes out with the writer's next write, at the latest the next
//! heartbeat; nothing on the server side waits for it.
//!
//! An EOF without close_notify counts as the peer closing, on both sides,
//! as it does without TLS: the reaper and the drain shut sockets down from
//! another thread, where no close_notify can be sent, and a line protocol
//! has no truncation for an attacker to exploit that plain TCP does not.

use rustls::{ClientConnection, ServerConnection};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

/// The server's side of one connection: the socket, with or without a
/// session in front of it.
pub enum ServerStream<'a> {
    Plain(&'a TcpStream),
    Tls {
        socket: &'a TcpStream,
        session: Box<ServerConnection>,
    },
}

impl ServerStream<'_> {
    /// Ends the sending side after everything written: close_notify first
    /// under TLS, then the TCP FIN. The socket may already be shut down
    /// (NotConnected): nothing left to end.
    pub fn finish(&mut self) -> io::Result<()> {
        let socket = match self {
            Self::Plain(socket) => *socket,
            Self::Tls { socket, session } => {
                session.send_close_notify();
                send_pending(session, socket)?;
                *socket
            }
        };
        match socket.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }
}

impl Read for ServerStream<'_> {
    /// Ok(0) at the peer's end: a FIN, with or without close_notify.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (socket, session) = match self {
            Self::Plain(socket) => return socket.read(buf),
            Self::Tls { socket, session } => (*socket, session),
        };
        loop {
            match session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // No plaintext yet: the socket's next bytes, then what they hold.
            let mut reader = socket;
            session.read_tls(&mut reader)?;
            if let Err(e) = session.process_new_packets() {
                let _ = send_pending(session, socket);
                return Err(io::Error::new(ErrorKind::InvalidData, e));
            }
            send_pending(session, socket)?;
        }
    }
}

impl Write for ServerStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(socket) => socket.write(buf),
            Self::Tls { socket, session } => {
                let n = session.writer().write(buf)?;
                send_pending(session, socket)?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(socket) => socket.flush(),
            Self::Tls { socket, session } => send_pending(session, socket),
        }
    }
}

/// Writes every TLS record the session has ready.
fn send_pending(session: &mut ServerConnection, mut socket: &TcpStream) -> io::Result<()> {
    while session.wants_write() {
        match session.write_tls(&mut socket) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The client's connection, shared by its reader and writer threads (see
/// the module doc for how they share the session).
#[derive(Clone)]
pub struct ClientStream {
    socket: Arc<TcpStream>,
    /// Locked by the reader to feed it what arrived and take out plaintext,
    /// and by the writer to seal what it sends; never across socket I/O.
    session: Option<Arc<parking_lot::Mutex<ClientConnection>>>,
}

impl ClientStream {
    pub fn plain(socket: TcpStream) -> Self {
        Self {
            socket: Arc::new(socket),
            session: None,
        }
    }

    /// `session` must have finished its handshake on `socket`.
    pub fn tls(socket: TcpStream, session: ClientConnection) -> Self {
        Self {
            socket: Arc::new(socket),
            session: Some(Arc::new(parking_lot::Mutex::new(session))),
        }
    }

    /// The TCP socket, for its address and for waking the threads blocked
    /// on it.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// The reader thread's call: blocks until the socket has bytes, then
    /// appends the plaintext they complete to `plaintext` (possibly none: a
    /// record may span reads). Ok(false) at the server's end (a FIN, or
    /// close_notify). `buf` is the raw read's buffer.
    pub fn read(&self, buf: &mut [u8], plaintext: &mut Vec<u8>) -> io::Result<bool> {
        let n = (&*self.socket).read(buf)?;
        let Some(session) = &self.session else {
            plaintext.extend_from_slice(&buf[..n]);
            return Ok(n > 0);
        };
        if n == 0 {
            return Ok(false);
        }
        let mut arrived = &buf[..n];
        let mut session = session.lock();
        while !arrived.is_empty() {
            feed(&mut session, &mut arrived)?;
            match session.reader().read_to_end(plaintext) {
                // close_notify: the server sends nothing more.
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// The writer thread's call: seals `bytes` under the lock, writes the
    /// records with the lock released.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        let Some(session) = &self.session else {
            return (&*self.socket).write_all(bytes);
        };
        let records = {
            let mut session = session.lock();
            session.writer().write_all(bytes)?;
            take_records(&mut session)?
        };
        (&*self.socket).write_all(&records)
    }

    /// The writer thread's call when nothing more will be sent:
    /// close_notify under TLS, then the TCP FIN.
    pub fn shutdown_write(&self) -> io::Result<()> {
        if let Some(session) = &self.session {
            let records = {
                let mut session = session.lock();
                session.send_close_notify();
                take_records(&mut session)?
            };
            (&*self.socket).write_all(&records)?;
        }
        self.socket.shutdown(Shutdown::Write)
    }
}

/// One reader and writer in one thread (`hb-client --check`), as `Read`:
/// plaintext the session holds first, else the socket's next bytes fed to
/// it, as [`ClientStream::read`] does. Ok(0) at the server's end.
impl Read for &ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(session) = &self.session else {
            return (&*self.socket).read(buf);
        };
        let mut raw = [0; 4096];
        loop {
            match session.lock().reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let n = (&*self.socket).read(&mut raw)?;
            if n == 0 {
                return Ok(0);
            }
            let mut arrived = &raw[..n];
            let mut session = session.lock();
            while !arrived.is_empty() {
                feed(&mut session, &mut arrived)?;
            }
        }
    }
}

/// As `Write`, for the same single user: [`ClientStream::write_all`].
impl Write for &ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // The inherent method, not `Write::write_all`, which calls this.
        ClientStream::write_all(self, buf)?;
        Ok(buf.len())
    }

    /// Every write is sent whole at once: nothing waits to be flushed.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Gives the session what it can take of `arrived` (advancing it past
/// that) and processes it.
fn feed(session: &mut ClientConnection, arrived: &mut &[u8]) -> io::Result<()> {
    session.read_tls(arrived)?;
    session
        .process_new_packets()
        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
    Ok(())
}

/// Every TLS record the session has ready, in order, taken out of it.
fn take_records(session: &mut ClientConnection) -> io::Result<Vec<u8>> {
    let mut records = Vec::new();
    while session.wants_write() {
        session.write_tls(&mut records)?;
    }
    Ok(records)
}
