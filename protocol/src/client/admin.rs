//! The typed calls of administration and integrations: who a token is, pairing, devices,
//! API keys, token rotation, channel allowlists, schedules, health and capabilities.

use super::{ApiPath, Client, ClientError};
use crate::admin::*;
use crate::integrations::*;

impl Client {
    /// Who this client's token belongs to (`GET /api/gateway/whoami`).
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get("api/gateway/whoami").await
    }

    /// `GET /api/health` (no token needed).
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("api/health").await
    }

    pub async fn capabilities(&self) -> Result<Capabilities, ClientError> {
        self.get("api/gateway/discovery/capabilities").await
    }

    /// Trades a pairing code for a named device token (`POST /api/gateway/pair`).
    pub async fn pair(&self, code: &str, name: &str) -> Result<Paired, ClientError> {
        let req = PairRequest {
            code: code.to_owned(),
            name: Some(name.to_owned()),
        };
        self.post("api/gateway/pair", &req).await
    }

    /// Mints a single-use pairing code (admin).
    pub async fn mint_pairing_code(&self) -> Result<PairingCode, ClientError> {
        self.post("api/gateway/pair/codes", &serde_json::json!({}))
            .await
    }

    /// Paired devices (admin).
    pub async fn devices(&self) -> Result<TokenList, ClientError> {
        self.get("api/gateway/devices").await
    }

    /// Revokes a device (admin).
    pub async fn revoke_device(&self, id: &str) -> Result<Revoked, ClientError> {
        let path = ApiPath::new("api/gateway/devices").id(id);
        Self::send(self.request(reqwest::Method::DELETE, path)?).await
    }

    /// Revokes this client's own device token (`DELETE /api/gateway/devices/self`).
    pub async fn revoke_self(&self) -> Result<Revoked, ClientError> {
        Self::send(self.request(reqwest::Method::DELETE, "api/gateway/devices/self")?).await
    }

    /// Scoped API keys (admin).
    pub async fn keys(&self) -> Result<TokenList, ClientError> {
        self.get("api/gateway/keys").await
    }

    /// Creates a scoped API key (admin); its token is in the answer, once.
    pub async fn create_key(
        &self,
        name: &str,
        scopes: &[String],
    ) -> Result<KeyCreated, ClientError> {
        let req = KeyRequest {
            name: name.to_owned(),
            scopes: scopes.to_vec(),
        };
        self.post("api/gateway/keys", &req).await
    }

    /// Revokes an API key (admin).
    pub async fn revoke_key(&self, id: &str) -> Result<Revoked, ClientError> {
        let path = ApiPath::new("api/gateway/keys").id(id);
        Self::send(self.request(reqwest::Method::DELETE, path)?).await
    }

    /// Mints a one-click answer link for `req.recipient` (the `channel` scope).
    pub async fn answer_link(
        &self,
        req: &crate::LinkRequest,
    ) -> Result<crate::LinkCreated, ClientError> {
        self.post(ApiPath::new("api/gateway/links"), req).await
    }

    /// What the link `token` answers (no credential needed).
    pub async fn link_info(&self, token: &str) -> Result<crate::LinkInfo, ClientError> {
        self.get(ApiPath::new("api/gateway/links").id(token)).await
    }

    /// Votes `choice` with the link `token` (no credential needed).
    pub async fn link_vote(
        &self,
        token: &str,
        choice: &str,
    ) -> Result<crate::CommandResponse, ClientError> {
        let body = crate::LinkVote {
            choice: choice.to_owned(),
        };
        self.post(ApiPath::new("api/gateway/links").id(token), &body)
            .await
    }

    pub async fn people(&self) -> Result<crate::PersonList, ClientError> {
        self.get(ApiPath::new("api/gateway/people")).await
    }

    pub async fn add_person(&self, p: &crate::Person) -> Result<crate::Person, ClientError> {
        self.post(ApiPath::new("api/gateway/people"), p).await
    }

    pub async fn remove_person(&self, name: &str) -> Result<crate::Person, ClientError> {
        let path = ApiPath::new("api/gateway/people").id(name);
        Self::send(self.request(reqwest::Method::DELETE, path)?).await
    }

    pub async fn groups(&self) -> Result<crate::GroupList, ClientError> {
        self.get(ApiPath::new("api/gateway/groups")).await
    }

    pub async fn add_group(&self, g: &crate::Group) -> Result<crate::Group, ClientError> {
        self.post(ApiPath::new("api/gateway/groups"), g).await
    }

    pub async fn remove_group(&self, name: &str) -> Result<crate::Group, ClientError> {
        let path = ApiPath::new("api/gateway/groups").id(name);
        Self::send(self.request(reqwest::Method::DELETE, path)?).await
    }

    /// Replaces a generated admin token (admin); the old one stops working at once.
    pub async fn rotate_token(&self) -> Result<RotatedToken, ClientError> {
        self.post("api/gateway/token/rotate", &serde_json::json!({}))
            .await
    }

    /// Publishes whom `channel` may reach (`PUT /api/gateway/channels/{channel}`; needs
    /// the `channel` scope).
    pub async fn publish_allowlist(
        &self,
        channel: &str,
        list: &ChannelAllowlist,
    ) -> Result<ChannelAllowlist, ClientError> {
        let path = ApiPath::new("api/gateway/channels").id(channel);
        Self::send(self.request(reqwest::Method::PUT, path)?.json(list)).await
    }

    /// Starts a schedule (`POST /api/gateway/runs/schedule`).
    pub async fn schedule(&self, req: &ScheduleRequest) -> Result<ScheduleCreated, ClientError> {
        self.post("api/gateway/runs/schedule", req).await
    }

    /// Schedules, newest first.
    pub async fn schedules(&self, limit: u32) -> Result<ScheduleList, ClientError> {
        self.get(ApiPath::new("api/gateway/schedules").query("limit", limit))
            .await
    }
}
