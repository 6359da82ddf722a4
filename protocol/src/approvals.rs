//! Team approvals: the pending prompts a caller may answer, and the people and groups
//! that approvers name.

use serde::{Deserialize, Serialize};

use crate::Vote;

/// A pending prompt (`GET /api/gateway/approvals`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalItem {
    pub run_id: String,
    pub bundle_id: String,
    pub wait_key: String,
    pub prompt: String,
    pub choices: Vec<String>,
    /// Who may answer; empty: anyone with the `command` scope.
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub quorum: u32,
    #[serde(default)]
    pub votes: Vec<Vote>,
    /// When it times out (RFC 3339), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApprovalList {
    pub items: Vec<ApprovalItem>,
}

/// `GET /api/gateway/approvals?for=<approver>` (default: the caller).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    /// Whose prompts: `person:alice`, `telegram:111`, `key:ci`…; another's needs `admin`.
    #[serde(default, rename = "for")]
    pub for_whom: Option<String>,
}

/// A person: one name over channel identities (`telegram:<id>`, `email:<address>`,
/// `device:<name>`, `key:<name>`, `admin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Person {
    pub name: String,
    pub identities: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PersonList {
    pub items: Vec<Person>,
}

/// A group of approvers (`person:`, `key:`, `device:`, `telegram:`, `email:` entries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Group {
    pub name: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupList {
    pub items: Vec<Group>,
}

/// `POST /api/gateway/links` (the `channel` scope): a one-click answer link for one
/// recipient of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    pub run_id: String,
    pub wait_key: String,
    /// Whom the link answers as: `email:<address>`.
    pub recipient: String,
    /// Seconds the link works (default and most: 7 days; never past the prompt's deadline).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkCreated {
    /// Signed, single use; goes into `/app/answer/<token>`.
    pub token: String,
    pub expires_at: String,
}

/// `GET /api/gateway/links/{token}`: what a link answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkInfo {
    pub run_id: String,
    pub bundle_id: String,
    pub prompt: String,
    pub choices: Vec<String>,
    pub recipient: String,
    pub expires_at: String,
    /// The prompt still waits for this answer.
    pub open: bool,
    /// When it does not: who answered (or voted with this link), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
}

/// `POST /api/gateway/links/{token}`: the recipient's choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LinkVote {
    pub choice: String,
}
