//! Why a backend could not answer: the errors of connecting and of a live connection, typed, and what kind of
//! failure each is for the stats.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// Why a backend could not answer. The reply names the backend and the reason; how the failure is counted
/// ([`BackendError::kind`]) and answered is decided by the reason's variant, never by its text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend {address} unavailable: {reason}")]
    Unavailable {
        address: Arc<str>,
        reason: BackendFailure,
    },
}

/// The reason of a [`BackendError`], typed. Shared by every waiter of a broken connection, hence the `Arc`s
/// (an `io::Error` cannot be cloned).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendFailure {
    /// No connection could be opened, or its handshake failed.
    #[error(transparent)]
    Connect(Arc<ConnectError>),
    /// A connection broke, or made no progress in time.
    #[error(transparent)]
    Lost(Arc<Broken>),
    /// The proxy's own mistake: requests sent that owe no reply (never sent, see `owed_nothing`).
    #[error("internal error: requests sent with no reply expected")]
    NothingOwed,
}

/// What kind of failure a [`BackendError`] is, for the stats and for the replies that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The backend made no progress within a deadline (connect, reply, write).
    Timeout,
    /// No connection could be opened (refused, unreachable, TLS failed).
    Unreachable,
    /// The backend answered the handshake (AUTH, HELLO, READONLY, SELECT) with an error.
    RefusedHandshake,
    /// A live connection broke: closed, an I/O error, or replies out of step.
    ConnectionLost,
    /// The proxy's own mistake.
    Internal,
}

impl BackendError {
    /// Connecting to `address` failed.
    pub fn connect(address: &Arc<str>, reason: ConnectError) -> Self {
        Self::new(address, BackendFailure::Connect(Arc::new(reason)))
    }

    /// The connection to `address` broke.
    pub fn lost(address: &Arc<str>, reason: Broken) -> Self {
        Self::new(address, BackendFailure::Lost(Arc::new(reason)))
    }

    pub(super) fn new(address: &Arc<str>, reason: BackendFailure) -> Self {
        BackendError::Unavailable {
            address: Arc::clone(address),
            reason,
        }
    }

    /// The backend that failed.
    pub fn address(&self) -> &Arc<str> {
        let BackendError::Unavailable { address, .. } = self;
        address
    }

    /// What kind of failure this is, from the reason's variant.
    pub fn kind(&self) -> FailureKind {
        let BackendError::Unavailable { reason, .. } = self;
        match reason {
            BackendFailure::Connect(error) => error.kind(),
            BackendFailure::Lost(broken) => broken.kind(),
            BackendFailure::NothingOwed => FailureKind::Internal,
        }
    }

    /// Redis's own error text when the handshake's SELECT was refused (the db does not exist): a client's
    /// SELECT gets it as Redis would have answered it.
    pub fn refused_select(&self) -> Option<&str> {
        match self {
            BackendError::Unavailable {
                reason: BackendFailure::Connect(error),
                ..
            } => match &**error {
                ConnectError::HandshakeRefused {
                    step: HandshakeStep::Select,
                    reply,
                } => Some(reply),
                _ => None,
            },
            _ => None,
        }
    }

    /// The error as a RESP error reply line.
    pub fn to_reply(&self) -> Bytes {
        Bytes::from(format!("-ERR {}\r\n", one_line(&self.to_string())))
    }
}

/// Keeps an error text on one line, as RESP requires.
pub fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A backend's answer to one request: the raw reply frame, or why there is none.
pub type BackendReply = Result<Bytes, BackendError>;

/// Why a connection (shared, dedicated or a big-request lane) was given up. The texts are the `<reason>` of
/// [`BackendError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error("connection closed by the backend")]
    Closed,
    /// A lane connection the server closed while a request was written.
    #[error("connection closed")]
    ClosedOnWrite,
    /// A lane connection the server closed before its reply was whole.
    #[error("connection closed while replying")]
    ClosedWhileReplying,
    #[error("read failed: {0}")]
    Read(std::io::Error),
    #[error("write failed: {0}")]
    Write(std::io::Error),
    #[error("bad reply from backend: {0}")]
    BadReply(resp_codec::ProtocolError),
    /// A lane reply that breaks the protocol (the text is the scanner's).
    #[error(transparent)]
    BadLaneReply(resp_codec::ProtocolError),
    #[error("reply without a request (protocol out of step)")]
    ReplyWithoutRequest,
    /// A lane connection that sent more than the reply asked for.
    #[error("bytes after the reply")]
    BytesAfterReply,
    /// A lane lease whose socket is gone (never expected: the socket is opened before it is used).
    #[error("no lane connection")]
    NoLaneConnection,
    #[error("no reply within {} ms", .0.as_millis())]
    NoReply(Duration),
    #[error("write blocked for {} ms", .0.as_millis())]
    WriteBlocked(Duration),
    /// A lane connection that neither took nor sent a byte within `slow_command_ms`.
    #[error("no progress for {} ms", .0.as_millis())]
    NoProgress(Duration),
}

impl Broken {
    /// A deadline without progress is a timeout; anything else broke the connection.
    pub fn kind(&self) -> FailureKind {
        match self {
            Broken::NoReply(_) | Broken::WriteBlocked(_) | Broken::NoProgress(_) => {
                FailureKind::Timeout
            }
            Broken::NoLaneConnection => FailureKind::Internal,
            _ => FailureKind::ConnectionLost,
        }
    }
}

/// Why a backend connection could not be opened. The texts are the `<reason>` of
/// [`BackendError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no connection within {0} ms")]
    Timeout(u128),
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    #[error("set TCP_NODELAY failed: {0}")]
    NoDelay(std::io::Error),
    #[error("handshake write failed: {0}")]
    HandshakeWrite(std::io::Error),
    #[error("handshake read failed: {0}")]
    HandshakeRead(std::io::Error),
    #[error("connection closed during handshake")]
    HandshakeClosed,
    #[error("handshake reply: {0}")]
    HandshakeReply(resp_codec::ProtocolError),
    /// The backend answered a command of the handshake with an error (a wrong password, a db out of range):
    /// `reply` is its error text.
    #[error("handshake refused: {reply}")]
    HandshakeRefused { step: HandshakeStep, reply: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::BackendTlsError),
    /// Configuration refuses `tls = true` with a `unix:` node; this stands in case one is built by hand.
    #[error("TLS is not spoken over a Unix domain socket")]
    TlsOverUnixSocket,
}

impl ConnectError {
    /// A connect or handshake that did not finish in time is a timeout; a refused handshake is told apart.
    pub fn kind(&self) -> FailureKind {
        match self {
            ConnectError::Timeout(_) => FailureKind::Timeout,
            ConnectError::HandshakeRefused { .. } => FailureKind::RefusedHandshake,
            _ => FailureKind::Unreachable,
        }
    }
}

/// The commands of a connection's handshake, in the order they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStep {
    /// `HELLO 3` (with AUTH, if the endpoint has a password).
    Hello,
    Auth,
    ReadOnly,
    Select,
}
