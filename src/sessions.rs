//! `client.sessions()`: discovery of live sessions.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{SessionInfo, SessionList};
use crate::robots::robot_path;
use crate::transport::{encode_query_value, Method};

/// Session discovery. Get one with [`Client::sessions`].
#[derive(Clone, Copy, Debug)]
pub struct Sessions<'c> {
    pub(crate) client: &'c Client,
}

impl Sessions<'_> {
    /// Live sessions visible to the caller (`GET /v1/sessions`), optionally of one scene.
    pub fn list(&self, scene_id: Option<&str>) -> Result<Vec<SessionInfo>> {
        let path = match scene_id {
            Some(scene) => format!("/v1/sessions?scene_id={}", encode_query_value(scene)),
            None => "/v1/sessions".to_owned(),
        };
        let list: SessionList = self.client.transport.json(Method::Get, &path, None)?;
        Ok(list.sessions)
    }

    /// The robot's live session (`GET /v1/robots/{id}/session`), or `None` when it has none.
    pub fn get(&self, robot_id: &str) -> Result<Option<SessionInfo>> {
        let path = robot_path(robot_id, "/session")?;
        match self.client.transport.json(Method::Get, &path, None) {
            Ok(info) => Ok(Some(info)),
            Err(Error::Api(api)) if api.status == 404 => Ok(None),
            Err(err) => Err(err),
        }
    }
}
