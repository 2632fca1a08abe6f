//! Session readiness and runtime-worker resolution (CONTRACT §6, §7, feature `livekit`):
//! participant identities, kinds and attributes come from the LiveKit room, slots from the
//! platform's `required_participants`.
//!
//! Input: JSON `{"required": {slot: RequiredParticipant…}, "participants": [{"identity",
//! "kind": "standard"|"agent"|…, "attributes": {…}}…], "prefix": "simplesim"}` (anything
//! missing or mistyped is treated as absent, so every input runs). Identities are unique in
//! a LiveKit room, so a repeated identity is dropped.
//!
//! Properties: never panics; each participant counts toward at most one slot, its longest
//! match; readiness lists exactly the required slots (`min_count > 0`) in key order and is
//! ready iff nothing is missing; a hint match is never a bare prefix; resolution candidates
//! are unique, present in the room, and a standard participant is one only when hinted.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use menlo_robot_sdk::__fuzzing::resolve::{
    best_slot, candidates, matches_hint, matches_slot, readiness, runtime_slot_names, RuntimeHints,
};
use menlo_robot_sdk::{Participant, ParticipantKind, RequiredParticipant};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let required: BTreeMap<String, RequiredParticipant> = input
        .get("required")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    // LiveKit identities are unique within a room: later duplicates are dropped.
    let mut participants: Vec<Participant> = Vec::new();
    for p in input
        .get("participants")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(participant)
    {
        if !participants.iter().any(|q| q.identity == p.identity) {
            participants.push(p);
        }
    }
    let prefix = input.get("prefix").and_then(Value::as_str);

    // Slot matching: each participant's best slot matches, and no longer slot does.
    let slot_names: Vec<&str> = required.keys().map(String::as_str).collect();
    for p in &participants {
        if let Some(best) = best_slot(p, slot_names.iter().copied()) {
            assert!(matches_slot(p, best));
            assert!(
                !slot_names
                    .iter()
                    .any(|s| s.len() > best.len() && matches_slot(p, s)),
                "a longer slot matches {:?}",
                p.identity
            );
        } else {
            assert!(!slot_names.iter().any(|s| matches_slot(p, s)));
        }
        for slot in &slot_names {
            if matches_slot(p, slot) && p.agent_name() != Some(slot) {
                assert!(
                    p.identity == *slot || p.identity.starts_with(&format!("{slot}-")),
                    "bare-prefix slot match"
                );
            }
        }
    }

    // Readiness.
    let ready = readiness(&required, &participants);
    let expected: Vec<&str> = required
        .iter()
        .filter(|(_, s)| s.min_count > 0)
        .map(|(n, _)| n.as_str())
        .collect();
    let got: Vec<&str> = ready.slots.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        got, expected,
        "readiness must list exactly the required slots, in key order"
    );
    let counted: u64 = ready.slots.iter().map(|s| u64::from(s.have)).sum();
    assert!(
        counted <= participants.len() as u64,
        "a participant counted twice"
    );
    assert_eq!(ready.is_ready(), ready.missing().is_empty());
    assert_eq!(ready.missing_description().is_empty(), ready.is_ready());

    // Hints and candidates.
    let slots = runtime_slot_names(&required);
    assert!(!slots.iter().any(|s| s == "robot" || s == "controller"));
    let hints = RuntimeHints::from_slots(prefix, &required);
    assert_eq!(hints.check().is_err(), hints.is_empty());
    let found = candidates(&hints, &participants);
    for (i, identity) in found.iter().enumerate() {
        assert!(!found[..i].contains(identity), "duplicate candidate {identity:?}");
        let present: Vec<&Participant> = participants.iter().filter(|p| &p.identity == identity).collect();
        assert!(!present.is_empty(), "candidate {identity:?} is not in the room");
        let hinted = |p: &Participant| {
            hints
                .identity_prefix
                .as_deref()
                .is_some_and(|h| matches_hint(&p.identity, h))
                || hints
                    .slots
                    .iter()
                    .any(|s| matches_hint(&p.identity, s) || p.agent_name() == Some(s.as_str()))
        };
        assert!(
            present
                .iter()
                .any(|p| p.kind == ParticipantKind::Agent || hinted(p)),
            "unhinted standard participant {identity:?} is a candidate"
        );
    }
    for p in participants.iter().filter(|p| p.kind == ParticipantKind::Agent) {
        assert!(
            found.contains(&p.identity),
            "agent {:?} is never probed",
            p.identity
        );
    }
    for (identity, hint) in participants
        .iter()
        .flat_map(|p| hints.names().into_iter().map(move |h| (&p.identity, h)))
    {
        if matches_hint(identity, &hint) {
            let rest = &identity[hint.len()..];
            assert!(
                rest.is_empty() || rest.starts_with('-') || rest.starts_with(':'),
                "bare-prefix hint match"
            );
        }
    }
});

fn participant(value: &Value) -> Participant {
    let identity = value.get("identity").and_then(Value::as_str).unwrap_or("");
    let kind = match value.get("kind").and_then(Value::as_str) {
        Some("agent") => ParticipantKind::Agent,
        Some("standard") | None => ParticipantKind::Standard,
        Some("ingress") => ParticipantKind::Ingress,
        Some(_) => ParticipantKind::Other(99),
    };
    let mut p = Participant::new(identity, kind);
    if let Some(attributes) = value.get("attributes").and_then(Value::as_object) {
        for (key, value) in attributes {
            if let Some(value) = value.as_str() {
                p = p.with_attribute(key.as_str(), value);
            }
        }
    }
    p
}
