//! The reliable channel's write queue, shared by the client peer and the embedded SFU's peer:
//! packets wait here while str0m's channel is full, not open yet, or paused, so nothing is
//! dropped and SCTP timers only start for what was really handed over.

use crate::live::sctp_clock::SctpClock;
use std::collections::VecDeque;
use str0m::channel::ChannelId;
use str0m::Rtc;

/// Most bytes a peer keeps waiting for its reliable channel; beyond it sends fail.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Packets waiting for the reliable data channel, in order.
#[derive(Debug, Default)]
pub(crate) struct WriteQueue {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
}

impl WriteQueue {
    /// Queues `data`; false (and nothing queued) when that would pass [`MAX_QUEUED_BYTES`].
    pub(crate) fn push(&mut self, data: Vec<u8>) -> bool {
        if self.bytes + data.len() > MAX_QUEUED_BYTES {
            return false;
        }
        self.bytes += data.len();
        self.packets.push_back(data);
        true
    }

    /// Hands queued packets to channel `id` until it is full; each write is reported to the
    /// SCTP clock. A write error is logged and leaves the packet queued.
    pub(crate) fn flush(&mut self, rtc: &mut Rtc, id: ChannelId, clock: &mut SctpClock) {
        while let Some(front) = self.packets.front() {
            let Some(mut ch) = rtc.channel(id) else {
                return;
            };
            match ch.write(true, front) {
                Ok(true) => {
                    clock.on_written(front.len());
                    self.bytes -= front.len();
                    self.packets.pop_front();
                }
                Ok(false) => return, // full: retried on BufferedAmountLow / next poll
                Err(e) => {
                    log::warn!("data channel write failed: {e}");
                    return;
                }
            }
        }
    }

    /// Packets waiting.
    pub(crate) fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Empties the queue, returning what waited, in order.
    pub(crate) fn take(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        self.packets.drain(..).collect()
    }
}
