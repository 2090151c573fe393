//! The front of the reply queue: replies that are ready move to the write buffer in request order, backend
//! replies are converted (a failed batch answers each of its requests), and cluster replies that ask for a
//! retry go back to the front.

use bytes::{Bytes, BytesMut};

use super::pending::{try_front_event, Expect, FrontEvent, Pending};
use super::{Session, MIN_UNCOPIED_REPLY};
use crate::backend::BackendReply;
use crate::reply;

impl Session {
    /// Adds a backend's reply bytes to the replies gathered: a big one as a piece of its own (see
    /// [`MIN_UNCOPIED_REPLY`]), unless a CLIENT REPLY filter must see every reply in the write buffer.
    #[inline(always)]
    fn gather_reply(&mut self, bytes: Bytes) {
        if bytes.len() < MIN_UNCOPIED_REPLY {
            self.gathered.buffer.extend_from_slice(&bytes);
        } else {
            self.gather_big_reply(bytes);
        }
    }

    #[inline(never)]
    fn gather_big_reply(&mut self, bytes: Bytes) {
        if self.client.reply_filter.is_some() {
            self.gathered.buffer.extend_from_slice(&bytes);
        } else {
            self.gathered.push_piece(bytes);
        }
    }

    /// Whether any request behind the front entry is still owed by a backend: then it may already have run, and
    /// the front entry can no longer be sent again without changing the order the client sees.
    pub(super) fn later_requests_in_flight(&self) -> bool {
        self.pending.iter().any(Pending::is_waiting)
    }

    /// Moves every reply that is already available, from the front of the queue, into the write buffer.
    pub(super) fn collect_ready_replies(&mut self) {
        loop {
            let Some(front) = self.pending.front_mut() else {
                return;
            };
            if let Pending::Ready(bytes) = front {
                let bytes = std::mem::take(bytes);
                self.gathered.buffer.extend_from_slice(&bytes);
                self.pending.pop_front();
                continue;
            }
            if let Pending::Dedicated(owed) = front {
                // Replies that came while earlier entries waited; complete once none is owed.
                if !owed.deliver_early(&mut self.gathered.buffer) {
                    return;
                }
                self.pending.pop_front();
                continue;
            }
            match try_front_event(front) {
                Some(event) => self.apply_front_event(event),
                None => return,
            }
        }
    }

    /// Applies an event to the front entry: completes it into the write buffer, or (cluster) sends it again.
    pub(super) fn apply_front_event(&mut self, event: FrontEvent) {
        let Some(front) = self.pending.pop_front() else {
            return;
        };
        self.count_backend_failure(&front, &event);
        match (front, event) {
            (Pending::Waiting(_, Expect::Rewrite(spec)), FrontEvent::Reply(reply)) => {
                let bytes = convert_reply(reply, Expect::Forward);
                let bytes = self.rewrite_reply_bytes(spec, bytes);
                self.gathered.buffer.extend_from_slice(&bytes);
            }
            (Pending::Waiting(_, expect), FrontEvent::Reply(reply)) => {
                let bytes = convert_reply(reply, expect);
                self.gather_reply(bytes);
            }
            (Pending::Sent(sent), FrontEvent::Reply(reply)) => {
                let bytes = convert_reply(reply, Expect::Batch(sent.count));
                self.note_batch_reply_sizes(&sent, &bytes);
                self.gather_reply(bytes);
            }
            (Pending::Routed(routed), FrontEvent::Reply(reply)) => {
                match self.cluster_reply(routed, reply) {
                    Ok(bytes) => self.gather_reply(bytes),
                    Err(again) => self.pending.push_front(again),
                }
            }
            (Pending::Transaction(exec), FrontEvent::Reply(reply)) => {
                match self.cluster_exec_reply(*exec, reply) {
                    Ok(bytes) => self.gathered.buffer.extend_from_slice(&bytes),
                    Err(again) => self.pending.push_front(again),
                }
            }
            (Pending::Merge(merge), FrontEvent::Part(index, reply)) => {
                match self.cluster_part_reply(merge, index, reply) {
                    Ok(bytes) => self.gathered.buffer.extend_from_slice(&bytes),
                    Err(again) => self.pending.push_front(again),
                }
            }
            (Pending::Pipeline(pipeline), FrontEvent::Part(index, reply)) => {
                if let Err(again) = self.cluster_pipeline_reply(pipeline, index, reply) {
                    self.pending.push_front(again);
                }
            }
            (other, _) => self.pending.push_front(other),
        }
    }
}

fn convert_reply(reply: BackendReply, expect: Expect) -> Bytes {
    match (reply, expect) {
        (Ok(frame), Expect::Forward | Expect::Batch(_) | Expect::Rewrite(_)) => frame,
        (Err(error), Expect::Batch(count)) => {
            let one = error.to_reply();
            let mut all = BytesMut::with_capacity(one.len() * count);
            for _ in 0..count {
                all.extend_from_slice(&one);
            }
            all.freeze()
        }
        (Ok(frame), Expect::SelectCheck) if frame.first() == Some(&b'-') => frame,
        (Ok(_), Expect::SelectCheck) => reply::ok(),
        (Err(error), Expect::SelectCheck) => match error.refused_select() {
            Some(refusal) => reply::error(refusal),
            None => error.to_reply(),
        },
        (Err(error), _) => error.to_reply(),
    }
}
