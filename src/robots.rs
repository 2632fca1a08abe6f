//! `client.robots()`: robot records, their session, and participant tokens.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{
    NewRobot, ParticipantToken, ParticipantTokenRequest, Robot, RobotCreated, RobotPage, RobotUpdate,
    SessionCreated, SessionOptions,
};
use crate::transport::{encode_query_value, encode_segment, Method};

/// Default page size of [`Robots::list`] and [`Robots::iter`].
pub const DEFAULT_PAGE_SIZE: u32 = 20;

/// Robot operations. Get one with [`Client::robots`].
#[derive(Clone, Copy, Debug)]
pub struct Robots<'c> {
    pub(crate) client: &'c Client,
}

impl<'c> Robots<'c> {
    /// Creates a robot (`POST /v1/robots`). The result carries the show-once PIN.
    ///
    /// Never retried: a retry after a lost response would create a second robot.
    pub fn create(&self, robot: &NewRobot) -> Result<RobotCreated> {
        check_length("name", &robot.name, 1, 255)?;
        check_length("model", &robot.model, 1, 255)?;
        if let Some(description) = &robot.description {
            check_length("description", description, 0, 1000)?;
        }
        self.client
            .transport
            .json(Method::Post, "/v1/robots", Some(to_body(robot)?))
    }

    /// One page of robots (`GET /v1/robots`). Pass the page's `next_id` as `after_id` for
    /// the next one.
    pub fn list(&self, limit: Option<u32>, after_id: Option<&str>) -> Result<RobotPage> {
        let mut path = String::from("/v1/robots");
        let mut separator = '?';
        if let Some(limit) = limit {
            if limit == 0 {
                return Err(Error::invalid("limit", "must be at least 1"));
            }
            path.push_str(&format!("{separator}limit={limit}"));
            separator = '&';
        }
        if let Some(after_id) = after_id {
            path.push_str(&format!("{separator}after_id={}", encode_query_value(after_id)));
        }
        self.client.transport.json(Method::Get, &path, None)
    }

    /// Every robot, page by page: the next page is fetched only when the iteration reaches it.
    ///
    /// An error ends the iteration after it is yielded.
    pub fn iter(&self, page_size: u32) -> RobotIter<'c> {
        RobotIter {
            robots: *self,
            page_size: page_size.max(1),
            buffer: Vec::new().into_iter(),
            next_after: None,
            done: false,
        }
    }

    /// One robot (`GET /v1/robots/{id}`).
    pub fn get(&self, robot_id: &str) -> Result<Robot> {
        self.client
            .transport
            .json(Method::Get, &robot_path(robot_id, "")?, None)
    }

    /// Changes the fields set in `update` (`PATCH /v1/robots/{id}`). An update with no field
    /// set is refused before anything is sent.
    pub fn update(&self, robot_id: &str, update: &RobotUpdate) -> Result<Robot> {
        if update.is_empty() {
            return Err(Error::invalid(
                "update",
                "no field to change: set at least one of name, language, voice, description",
            ));
        }
        if let Some(name) = &update.name {
            check_length("name", name, 1, 255)?;
        }
        if let Some(description) = &update.description {
            check_length("description", description, 0, 1000)?;
        }
        let path = robot_path(robot_id, "")?;
        self.client
            .transport
            .json(Method::Patch, &path, Some(to_body(update)?))
    }

    /// Deletes a robot (`DELETE /v1/robots/{id}`).
    pub fn delete(&self, robot_id: &str) -> Result<()> {
        self.client
            .transport
            .send(Method::Delete, &robot_path(robot_id, "")?, None)
            .map(drop)
    }

    /// Starts the robot's session (`POST /v1/robots/{id}/session`): the room, the caller's
    /// LiveKit token, and the slots to fill. Never retried.
    pub fn create_session(&self, robot_id: &str, options: &SessionOptions) -> Result<SessionCreated> {
        let path = robot_path(robot_id, "/session")?;
        let body = if options.is_empty() {
            None
        } else {
            Some(to_body(options)?)
        };
        self.client.transport.json(Method::Post, &path, body)
    }

    /// Ends the robot's session (`DELETE /v1/robots/{id}/session`).
    pub fn delete_session(&self, robot_id: &str) -> Result<()> {
        self.client
            .transport
            .send(Method::Delete, &robot_path(robot_id, "/session")?, None)
            .map(drop)
    }

    /// Mints an extra room credential (`POST …/session/participant-token`); what room keys
    /// are built from. Never retried.
    ///
    /// A TTL over 6 h is sent as asked and the server caps it at 6 h: the token's
    /// `expires_at` says what was granted. A TTL of 0 is refused before sending.
    pub fn create_participant_token(
        &self,
        robot_id: &str,
        request: &ParticipantTokenRequest,
    ) -> Result<ParticipantToken> {
        check_length("participant_identity", &request.participant_identity, 1, 256)?;
        check_length("participant_name", &request.participant_name, 1, 256)?;
        if request.ttl_seconds == Some(0) {
            return Err(Error::invalid(
                "ttl_seconds",
                "must be at least 1 (the server caps it at 21600 = 6 hours)",
            ));
        }
        let path = robot_path(robot_id, "/session/participant-token")?;
        self.client
            .transport
            .json(Method::Post, &path, Some(to_body(request)?))
    }
}

/// Lazily follows `next_id` across pages. Made by [`Robots::iter`].
#[must_use = "iterators are lazy and fetch nothing unless consumed"]
#[derive(Debug)]
pub struct RobotIter<'c> {
    robots: Robots<'c>,
    page_size: u32,
    buffer: std::vec::IntoIter<Robot>,
    next_after: Option<String>,
    done: bool,
}

impl Iterator for RobotIter<'_> {
    type Item = Result<Robot>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(robot) = self.buffer.next() {
                return Some(Ok(robot));
            }
            if self.done {
                return None;
            }
            match self.robots.list(Some(self.page_size), self.next_after.as_deref()) {
                Ok(page) => {
                    // A page that repeats the cursor would loop forever; stop there instead.
                    self.done = page.next_id.is_none() || page.next_id == self.next_after;
                    self.next_after = page.next_id;
                    self.buffer = page.robots.into_iter();
                }
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// `/v1/robots/{id}{suffix}` with the id checked and percent-encoded.
pub(crate) fn robot_path(robot_id: &str, suffix: &str) -> Result<String> {
    check_robot_id(robot_id)?;
    Ok(format!("/v1/robots/{}{suffix}", encode_segment(robot_id)))
}

/// A robot id must be non-empty and not a path step.
pub(crate) fn check_robot_id(robot_id: &str) -> Result<()> {
    if robot_id.trim().is_empty() || robot_id == "." || robot_id == ".." {
        return Err(Error::invalid(
            "robot_id",
            format!("expected a robot id such as rb_…, got {robot_id:?}"),
        ));
    }
    Ok(())
}

fn check_length(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let length = value.chars().count();
    if length < min || length > max {
        return Err(Error::invalid(
            field,
            format!("must be {min}..={max} characters, got {length}"),
        ));
    }
    Ok(())
}

fn to_body<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|err| Error::invalid("request body", err.to_string()))
}
