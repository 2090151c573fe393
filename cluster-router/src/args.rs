//! The `Args` trait: the only view of a request that cluster-router needs.
//!
//! Routing works over "argument number `i` as bytes", so the crate does not depend on how the
//! proxy stores a parsed request. The proxy implements `Args` for its own request type (for
//! example `resp_codec::Request`); tests and tools use the implementations for slices below.
//! Argument 0 is the command name, as in Redis's own `argv`.

/// Read access to the arguments of one command, argument 0 being the command name.
///
/// ```
/// use cluster_router::Args;
///
/// let args: &[&[u8]] = &[b"GET", b"foo"];
/// assert_eq!(args.argc(), 2);
/// assert_eq!(args.arg(1), Some(&b"foo"[..]));
/// assert_eq!(args.arg(2), None);
/// ```
pub trait Args {
    /// The number of arguments, including the command name.
    fn argc(&self) -> usize;

    /// Argument `index`, or `None` when `index >= argc()`.
    fn arg(&self, index: usize) -> Option<&[u8]>;
}

impl<A: Args + ?Sized> Args for &A {
    fn argc(&self) -> usize {
        (**self).argc()
    }

    fn arg(&self, index: usize) -> Option<&[u8]> {
        (**self).arg(index)
    }
}

impl<T: AsRef<[u8]>> Args for [T] {
    fn argc(&self) -> usize {
        self.len()
    }

    fn arg(&self, index: usize) -> Option<&[u8]> {
        self.get(index).map(AsRef::as_ref)
    }
}

impl<T: AsRef<[u8]>, const N: usize> Args for [T; N] {
    fn argc(&self) -> usize {
        N
    }

    fn arg(&self, index: usize) -> Option<&[u8]> {
        self.get(index).map(AsRef::as_ref)
    }
}

impl<T: AsRef<[u8]>> Args for Vec<T> {
    fn argc(&self) -> usize {
        self.len()
    }

    fn arg(&self, index: usize) -> Option<&[u8]> {
        self.get(index).map(AsRef::as_ref)
    }
}

/// A framed client request, so the proxy can route it directly.
///
/// ```
/// use cluster_router::commands::lookup;
/// use resp_codec::Request;
///
/// let request = Request::from_args(["client", "SETNAME", "app"]);
/// assert_eq!(lookup(&request).unwrap().name, "client|setname");
/// ```
impl Args for resp_codec::Request {
    fn argc(&self) -> usize {
        resp_codec::Request::argc(self)
    }

    fn arg(&self, index: usize) -> Option<&[u8]> {
        resp_codec::Request::arg(self, index)
    }
}
