//! Which network path a connection rides on: the public [`NetworkPath`] and the cell the
//! engine keeps it in for the handles to read.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// The network path a live connection uses: how its packets travel between this machine and
/// the LiveKit server.
///
/// Read it with [`crate::Session::network_path`] (or [`crate::RuntimeHost::network_path`]).
/// The SDK tries UDP and ICE over TCP at once (UDP wins whenever it works), then, when
/// neither answers within 1.5 s, the TURN relays the server offers; the same values name the
/// paths tried in a connect error.
/// Relayed paths cost latency (every packet makes a detour through the TURN server), and
/// paths over TCP or TLS suffer head-of-line blocking when packets are lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum NetworkPath {
    /// ICE over UDP, straight to the server: the normal, fastest path.
    Udp,
    /// ICE over TCP (RFC 6544), straight to the server: used where UDP is blocked.
    Tcp,
    /// Relayed by a TURN server reached over UDP.
    TurnUdp,
    /// Relayed by a TURN server reached over TCP.
    TurnTcp,
    /// Relayed by a TURN server reached over TLS (often on port 443): the last resort on
    /// networks that only let HTTPS-like traffic out.
    TurnTls,
}

impl NetworkPath {
    /// Whether packets go through a TURN relay rather than straight to the server.
    pub fn is_relayed(self) -> bool {
        matches!(
            self,
            NetworkPath::TurnUdp | NetworkPath::TurnTcp | NetworkPath::TurnTls
        )
    }

    /// Whether the first hop (to the server, or to the TURN relay) is a TCP connection (plain
    /// or TLS), so that one lost packet holds up the ones behind it.
    pub fn uses_tcp(self) -> bool {
        matches!(
            self,
            NetworkPath::Tcp | NetworkPath::TurnTcp | NetworkPath::TurnTls
        )
    }

    /// The code stored in [`CurrentPath`] (0 is "none").
    fn code(self) -> u8 {
        match self {
            NetworkPath::Udp => 1,
            NetworkPath::Tcp => 2,
            NetworkPath::TurnUdp => 3,
            NetworkPath::TurnTcp => 4,
            NetworkPath::TurnTls => 5,
        }
    }

    fn from_code(code: u8) -> Option<NetworkPath> {
        match code {
            1 => Some(NetworkPath::Udp),
            2 => Some(NetworkPath::Tcp),
            3 => Some(NetworkPath::TurnUdp),
            4 => Some(NetworkPath::TurnTcp),
            5 => Some(NetworkPath::TurnTls),
            _ => None,
        }
    }
}

impl fmt::Display for NetworkPath {
    /// `UDP`, `TCP`, `TURN/UDP`, `TURN/TCP` or `TURN/TLS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkPath::Udp => "UDP",
            NetworkPath::Tcp => "TCP",
            NetworkPath::TurnUdp => "TURN/UDP",
            NetworkPath::TurnTcp => "TURN/TCP",
            NetworkPath::TurnTls => "TURN/TLS",
        })
    }
}

/// The path the session data (DTLS, SCTP) last arrived on, written by the engine on every
/// such packet and read by the handles without a lock.
#[derive(Debug, Default)]
pub struct CurrentPath(AtomicU8);

impl CurrentPath {
    /// The path, or `None` when no session data has arrived on the current link yet.
    pub fn get(&self) -> Option<NetworkPath> {
        NetworkPath::from_code(self.0.load(Ordering::Relaxed))
    }

    /// Records the path of a packet (or `None`: a new link, or the end).
    pub fn set(&self, path: Option<NetworkPath>) {
        self.0.store(path.map_or(0, NetworkPath::code), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [NetworkPath; 5] = [
        NetworkPath::Udp,
        NetworkPath::Tcp,
        NetworkPath::TurnUdp,
        NetworkPath::TurnTcp,
        NetworkPath::TurnTls,
    ];

    #[test]
    fn paths_display_as_their_transport_names() {
        let names: Vec<String> = ALL.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["UDP", "TCP", "TURN/UDP", "TURN/TCP", "TURN/TLS"]);
    }

    #[test]
    fn only_turn_paths_are_relayed_and_tcp_and_tls_hops_use_tcp() {
        let relayed: Vec<NetworkPath> = ALL.into_iter().filter(|p| p.is_relayed()).collect();
        assert_eq!(
            relayed,
            [NetworkPath::TurnUdp, NetworkPath::TurnTcp, NetworkPath::TurnTls]
        );
        let over_tcp: Vec<NetworkPath> = ALL.into_iter().filter(|p| p.uses_tcp()).collect();
        assert_eq!(
            over_tcp,
            [NetworkPath::Tcp, NetworkPath::TurnTcp, NetworkPath::TurnTls]
        );
    }

    #[test]
    fn the_current_path_starts_unknown_and_keeps_what_was_set() {
        let current = CurrentPath::default();
        assert_eq!(current.get(), None);
        for path in ALL {
            current.set(Some(path));
            assert_eq!(current.get(), Some(path));
        }
        current.set(None);
        assert_eq!(current.get(), None);
    }
}
