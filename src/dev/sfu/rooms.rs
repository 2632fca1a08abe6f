//! Rooms and their participants: who is where, the participant updates everyone is sent,
//! and where data packets go. Participant tasks talk to each other only through this
//! registry and the [`Outbound`] channel each of them drains.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use livekit_protocol as proto;
use proto::participant_info::State;
use proto::signal_response::Message as Resp;
use tokio::sync::mpsc::UnboundedSender;

use super::admission::Admission;
use super::http::SignalWs;
use super::{SfuRoom, SERVER_PROTOCOL, SERVER_VERSION};
use crate::dev::token::{random_alnum, unix_now};

/// What a participant task is asked to do by the rest of the server.
#[derive(Debug)]
pub(super) enum Outbound {
    /// Send this signal message.
    Signal(Box<Resp>),
    /// Send this encoded `DataPacket` on the reliable (`true`) or lossy channel.
    Data(bool, Vec<u8>),
    /// Tell the client to leave for this reason, then end.
    Close(proto::DisconnectReason),
    /// The client resumes its session on a new websocket.
    Resume(Box<Resume>),
}

/// A resume handed to the participant it resumes.
pub(super) struct Resume {
    /// The new signalling websocket.
    pub ws: SignalWs,
    /// The resuming request, as admitted.
    pub admission: Admission,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("sid", &self.admission.resumed_sid)
            .finish_non_exhaustive()
    }
}

struct Member {
    info: proto::ParticipantInfo,
    tx: UnboundedSender<Outbound>,
}

struct Room {
    sid: String,
    creation_time_ms: i64,
    /// In join order.
    members: Vec<Member>,
}

impl Room {
    fn to_proto(&self, name: &str) -> proto::Room {
        proto::Room {
            sid: self.sid.clone(),
            name: name.to_string(),
            creation_time: self.creation_time_ms / 1000,
            creation_time_ms: self.creation_time_ms,
            num_participants: self.visible().count() as u32,
            empty_timeout: 0,
            departure_timeout: 0,
            ..Default::default()
        }
    }

    fn visible(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| !is_hidden(&m.info))
    }

    /// Sends `info` as a participant update to every member but `skip_sid` (hidden
    /// participants are never announced).
    fn broadcast(&self, info: &proto::ParticipantInfo, skip_sid: Option<&str>) {
        if is_hidden(info) {
            return;
        }
        for m in &self.members {
            if Some(m.info.sid.as_str()) != skip_sid {
                let update = proto::ParticipantUpdate {
                    participants: vec![info.clone()],
                };
                let _ = m.tx.send(Outbound::Signal(Box::new(Resp::Update(update))));
            }
        }
    }

    fn member_mut(&mut self, sid: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.info.sid == sid)
    }
}

fn is_hidden(info: &proto::ParticipantInfo) -> bool {
    info.permission.as_ref().is_some_and(|p| p.hidden)
}

/// What a participant gets when it joins.
pub(super) struct Joined {
    pub room: proto::Room,
    pub others: Vec<proto::ParticipantInfo>,
    pub server_info: proto::ServerInfo,
}

/// Every room of one SFU.
#[derive(Default)]
pub(super) struct Registry {
    rooms: Mutex<HashMap<String, Room>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a participant (state `JOINED`) to `room`, creating the room if needed. A member
    /// with the same identity is told to leave (`DUPLICATE_IDENTITY`) and replaced, as
    /// livekit-server does. The others are told about the newcomer.
    pub(super) fn join(
        &self,
        room_name: &str,
        mut info: proto::ParticipantInfo,
        tx: UnboundedSender<Outbound>,
    ) -> Joined {
        let mut rooms = self.lock();
        let room = rooms.entry(room_name.to_string()).or_insert_with(|| Room {
            sid: format!("RM_{}", random_alnum(12)),
            creation_time_ms: unix_now().as_millis() as i64,
            members: Vec::new(),
        });
        if let Some(pos) = room.members.iter().position(|m| m.info.identity == info.identity) {
            let old = room.members.remove(pos);
            let _ = old
                .tx
                .send(Outbound::Close(proto::DisconnectReason::DuplicateIdentity));
            let mut gone = old.info;
            gone.state = State::Disconnected as i32;
            gone.disconnect_reason = proto::DisconnectReason::DuplicateIdentity as i32;
            gone.version += 1;
            room.broadcast(&gone, None);
        }
        let others = room.visible().map(|m| m.info.clone()).collect();
        info.state = State::Joined as i32;
        info.version = 1;
        room.broadcast(&info, None);
        room.members.push(Member { info, tx });
        Joined {
            room: room.to_proto(room_name),
            others,
            server_info: server_info(),
        }
    }

    /// Marks a participant `ACTIVE` (its data connection is up) and tells the others.
    pub(super) fn set_active(&self, room_name: &str, sid: &str) {
        self.update(room_name, sid, false, |info| info.state = State::Active as i32);
    }

    /// Applies `change` to a participant's info, bumps its version and broadcasts it (to the
    /// participant itself too when `to_self`).
    pub(super) fn update(
        &self,
        room_name: &str,
        sid: &str,
        to_self: bool,
        change: impl FnOnce(&mut proto::ParticipantInfo),
    ) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(room_name) else {
            return;
        };
        let Some(member) = room.member_mut(sid) else {
            return;
        };
        change(&mut member.info);
        member.info.version += 1;
        let info = member.info.clone();
        room.broadcast(&info, (!to_self).then_some(sid));
    }

    /// Removes a participant and tells the others (`DISCONNECTED` with `reason`). The room
    /// ends at once when its last participant leaves.
    pub(super) fn leave(&self, room_name: &str, sid: &str, reason: proto::DisconnectReason) {
        let mut rooms = self.lock();
        let Some(room) = rooms.get_mut(room_name) else {
            return;
        };
        let Some(pos) = room.members.iter().position(|m| m.info.sid == sid) else {
            return;
        };
        let mut info = room.members.remove(pos).info;
        info.state = State::Disconnected as i32;
        info.disconnect_reason = reason as i32;
        info.version += 1;
        room.broadcast(&info, None);
        if room.members.is_empty() {
            rooms.remove(room_name);
        }
    }

    /// Hands a resume to the participant of `identity` in `room_name`; gives it back when
    /// there is none (it left, or its task is ending), to be refused.
    pub(super) fn hand_over(
        &self,
        room_name: &str,
        identity: &str,
        resume: Box<Resume>,
    ) -> Result<(), Box<Resume>> {
        let rooms = self.lock();
        let Some(member) = rooms
            .get(room_name)
            .and_then(|room| room.members.iter().find(|m| m.info.identity == identity))
        else {
            return Err(resume);
        };
        match member.tx.send(Outbound::Resume(resume)) {
            Err(e) => match e.0 {
                Outbound::Resume(resume) => Err(resume),
                _ => Ok(()),
            },
            Ok(()) => Ok(()),
        }
    }

    /// The room and every visible participant in it (the resuming one included), for the
    /// snapshot a resumed participant is sent.
    pub(super) fn room_snapshot(
        &self,
        room_name: &str,
    ) -> Option<(proto::Room, Vec<proto::ParticipantInfo>)> {
        let rooms = self.lock();
        let room = rooms.get(room_name)?;
        let infos = room.visible().map(|m| m.info.clone()).collect();
        Some((room.to_proto(room_name), infos))
    }

    /// Forwards a data packet from `sender_sid` to the other members of the room: those named
    /// in `destination_identities` (or the user packet's destination SIDs), or everyone.
    #[allow(deprecated)] // destination SIDs: still honoured for older clients
    pub(super) fn route(
        &self,
        room_name: &str,
        sender_sid: &str,
        packet: &proto::DataPacket,
        reliable: bool,
    ) {
        let rooms = self.lock();
        let Some(room) = rooms.get(room_name) else {
            return;
        };
        let dest_sids: &[String] = match &packet.value {
            Some(proto::data_packet::Value::User(u)) => &u.destination_sids,
            _ => &[],
        };
        let identities = &packet.destination_identities;
        let targeted = !identities.is_empty() || !dest_sids.is_empty();
        let mut encoded: Option<Vec<u8>> = None;
        for m in &room.members {
            if m.info.sid == sender_sid {
                continue;
            }
            if targeted && !identities.contains(&m.info.identity) && !dest_sids.contains(&m.info.sid) {
                continue;
            }
            let bytes = encoded.get_or_insert_with(|| prost::Message::encode_to_vec(packet));
            let _ = m.tx.send(Outbound::Data(reliable, bytes.clone()));
        }
    }

    /// Tells every participant of `room_name` to leave (`ROOM_DELETED`) and forgets the room.
    pub(super) fn delete(&self, room_name: &str) -> bool {
        let Some(room) = self.lock().remove(room_name) else {
            return false;
        };
        for m in room.members {
            let _ = m.tx.send(Outbound::Close(proto::DisconnectReason::RoomDeleted));
        }
        true
    }

    /// Tells everybody the server is shutting down.
    pub(super) fn close_all(&self) {
        for (_, room) in self.lock().drain() {
            for m in room.members {
                let _ =
                    m.tx.send(Outbound::Close(proto::DisconnectReason::ServerShutdown));
            }
        }
    }

    /// A snapshot of the rooms, sorted by name.
    pub(super) fn snapshot(&self) -> Vec<SfuRoom> {
        let mut rooms: Vec<SfuRoom> = self
            .lock()
            .iter()
            .map(|(name, room)| SfuRoom {
                name: name.clone(),
                sid: room.sid.clone(),
                participants: room.members.iter().map(|m| m.info.identity.clone()).collect(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }
}

/// What the server says about itself in every join response.
pub(super) fn server_info() -> proto::ServerInfo {
    proto::ServerInfo {
        edition: proto::server_info::Edition::Standard as i32,
        version: SERVER_VERSION.to_string(),
        protocol: SERVER_PROTOCOL,
        node_id: "menlo-embedded-sfu".to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    fn info(sid: &str, identity: &str) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            ..Default::default()
        }
    }

    fn updates(rx: &mut UnboundedReceiver<Outbound>) -> Vec<(String, i32)> {
        let mut seen = Vec::new();
        while let Ok(out) = rx.try_recv() {
            if let Outbound::Signal(msg) = out {
                let Resp::Update(u) = *msg else { continue };
                seen.extend(u.participants.into_iter().map(|p| (p.identity, p.state)));
            }
        }
        seen
    }

    #[test]
    fn join_update_leave_and_routing() {
        let reg = Registry::default();
        let (tx_a, mut rx_a) = unbounded_channel();
        let (tx_b, mut rx_b) = unbounded_channel();
        let (tx_c, mut rx_c) = unbounded_channel();
        assert!(reg.join("r", info("PA_a", "a"), tx_a).others.is_empty());
        let joined = reg.join("r", info("PA_b", "b"), tx_b);
        assert_eq!(joined.others.len(), 1);
        assert_eq!(joined.room.num_participants, 2);
        reg.join("other", info("PA_c", "c"), tx_c);
        assert_eq!(updates(&mut rx_a), vec![("b".into(), State::Joined as i32)]);
        reg.set_active("r", "PA_b");
        assert_eq!(updates(&mut rx_a), vec![("b".into(), State::Active as i32)]);
        assert!(updates(&mut rx_b).is_empty());

        let mut packet = proto::DataPacket {
            destination_identities: vec!["a".into()],
            ..Default::default()
        };
        reg.route("r", "PA_b", &packet, true);
        assert!(matches!(rx_a.try_recv(), Ok(Outbound::Data(true, _))));
        assert!(rx_b.try_recv().is_err());
        packet.destination_identities.clear();
        reg.route("r", "PA_a", &packet, false);
        assert!(matches!(rx_b.try_recv(), Ok(Outbound::Data(false, _))));
        assert!(rx_c.try_recv().is_err(), "no crosstalk between rooms");

        reg.leave("r", "PA_b", proto::DisconnectReason::ClientInitiated);
        assert_eq!(updates(&mut rx_a), vec![("b".into(), State::Disconnected as i32)]);
        reg.leave("r", "PA_a", proto::DisconnectReason::ClientInitiated);
        assert_eq!(reg.snapshot().len(), 1, "an empty room ends at once");
        assert!(reg.delete("other"));
        assert!(matches!(
            rx_c.try_recv(),
            Ok(Outbound::Close(proto::DisconnectReason::RoomDeleted))
        ));
        assert!(!reg.delete("other"));
    }

    #[test]
    fn same_identity_replaces_the_old_session() {
        let reg = Registry::default();
        let (tx_old, mut rx_old) = unbounded_channel();
        let (tx_new, _rx_new) = unbounded_channel();
        reg.join("r", info("PA_1", "a"), tx_old);
        let joined = reg.join("r", info("PA_2", "a"), tx_new);
        assert!(joined.others.is_empty());
        assert!(matches!(
            rx_old.try_recv(),
            Ok(Outbound::Close(proto::DisconnectReason::DuplicateIdentity))
        ));
        assert_eq!(reg.snapshot()[0].participants, vec!["a".to_string()]);
    }
}
