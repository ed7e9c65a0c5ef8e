//! Administration in the UI (admins only): users, agent keys, API tokens, webhooks, and the audit
//! log.
//!
//! A new secret (generated password, agent secret, token) is shown once, on the page that answers
//! the form, with `Cache-Control: no-store`; the database keeps only hashes of passwords and tokens.
//! Every change is written to the audit log.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::{CurrentUser, Layout, Posted, parse_query};
use crate::admin::{self as keys_admin, KeyInfo, TokenInfo};
use crate::auth::{self, KeyScope, Role};
use crate::service::audit_log::{self as audit, AuditQuery, Entry};
use crate::service::webhooks;
use crate::store::outbox::EventKind;
use crate::web::error::WebError;
use crate::web::users::{self, User};
use crate::web::{WebState, templates};

/// A secret shown once.
#[derive(Debug, Serialize)]
struct Secret {
    title: String,
    lines: Vec<(String, String)>,
    note: String,
    /// A file to save, ready to paste: (its usual name, its content).
    file: Option<(String, String)>,
}

#[derive(Serialize)]
struct UsersPage {
    layout: Layout,
    users: Vec<User>,
    me: i64,
    secret: Option<Secret>,
    roles: [&'static str; 3],
}

const ROLES: [&str; 3] = ["viewer", "editor", "admin"];

async fn users_page(state: &WebState, user: &CurrentUser, secret: Option<Secret>) -> Result<Response, WebError> {
    let page = UsersPage {
        layout: user.layout(state, "admin"),
        users: users::list(&state.app.db).await?,
        me: user.session.user_id,
        secret,
        roles: ROLES,
    };
    Ok(templates::render("admin_users.html", &page)?.into_response())
}

/// `GET /admin/users`.
pub async fn users(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Admin)?;
    users_page(&state, &user, None).await
}

fn parse_role(text: &str) -> Result<Role, WebError> {
    Role::parse(text).ok_or_else(|| WebError::BadRequest(format!("unknown role {text:?}: viewer, editor or admin")))
}

/// The new-user form.
#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

impl std::fmt::Debug for NewUserForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUserForm").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// `POST /admin/users`: a new user; without a password, one is generated. Either way the user
/// changes it at the first login (only they should know it).
pub async fn create_user(
    State(state): State<Arc<WebState>>,
    posted: Posted<NewUserForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let form = &posted.form;
    let role = parse_role(&form.role)?;
    let generated = form.password.is_empty();
    let password = if generated { users::generate_password() } else { form.password.clone() };
    // A password someone else chose (typed here or generated) is changed at the first login.
    let created = users::create(&state.app.db, &form.name, role, &password, true).await?;
    audit::record_from(
        &state.app.db,
        &user.session.name,
        "user.create",
        &format!("user {} role {}", created.name, role.as_str()),
        user.client_ip.as_deref(),
    )
    .await?;
    let secret = generated.then(|| Secret {
        title: format!("User {} created", created.name),
        lines: vec![("Name".to_owned(), created.name.clone()), ("Password".to_owned(), password)],
        note: "Shown once. Hand it over privately; it must be changed at the first login.".to_owned(),
        file: None,
    });
    match secret {
        Some(secret) => users_page(&state, user, Some(secret)).await,
        None => Ok(Redirect::to("/admin/users").into_response()),
    }
}

/// The per-user actions.
#[derive(Debug, Deserialize)]
pub struct UserAction {
    action: String,
    #[serde(default)]
    role: String,
}

/// `POST /admin/users/{id}`: `action` = role (with `role`), disable, enable or reset_password.
pub async fn update_user(
    State(state): State<Arc<WebState>>,
    Path(id): Path<i64>,
    posted: Posted<UserAction>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let db = &state.app.db;
    let target = users::get(db, id).await?;
    let actor = user.session.name.as_str();
    let ip = user.client_ip.as_deref();
    match posted.form.action.as_str() {
        "role" => {
            let role = parse_role(&posted.form.role)?;
            users::set_role(db, id, role).await?;
            audit::record_from(
                db,
                actor,
                "user.role",
                &format!("user {} role {} -> {}", target.name, target.role.as_str(), role.as_str()),
                ip,
            )
            .await?;
        }
        "disable" => {
            if id == user.session.user_id {
                return Err(WebError::Conflict("you cannot disable yourself".to_owned()));
            }
            users::set_disabled(db, id, true).await?;
            audit::record_from(db, actor, "user.disable", &format!("user {}", target.name), ip).await?;
        }
        "enable" => {
            users::set_disabled(db, id, false).await?;
            audit::record_from(db, actor, "user.enable", &format!("user {}", target.name), ip).await?;
        }
        "reset_password" => {
            let password = users::generate_password();
            users::set_password(db, id, &password, true).await?;
            audit::record_from(db, actor, "user.password_reset", &format!("user {}", target.name), ip).await?;
            let secret = Secret {
                title: format!("New password for {}", target.name),
                lines: vec![("Name".to_owned(), target.name.clone()), ("Password".to_owned(), password)],
                note: "Shown once. Their sessions have ended; the password must be changed at the next login."
                    .to_owned(),
                file: None,
            };
            return users_page(&state, user, Some(secret)).await;
        }
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    }
    Ok(Redirect::to("/admin/users").into_response())
}

#[derive(Serialize)]
struct KeysPage {
    layout: Layout,
    keys: Vec<KeyInfo>,
    secret: Option<Secret>,
}

async fn keys_page(state: &WebState, user: &CurrentUser, secret: Option<Secret>) -> Result<Response, WebError> {
    let page =
        KeysPage { layout: user.layout(state, "admin"), keys: keys_admin::list_keys(&state.app.db).await?, secret };
    Ok(templates::render("admin_keys.html", &page)?.into_response())
}

/// `GET /admin/keys`.
pub async fn keys(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Admin)?;
    keys_page(&state, &user, None).await
}

/// The new-key form.
#[derive(Debug, Deserialize)]
pub struct NewKeyForm {
    scope: String,
    #[serde(default)]
    name: String,
    /// For host keys: the asset to bind the key to now (empty: its first report decides).
    #[serde(default)]
    asset: String,
    /// Create it even when an active key has this name.
    #[serde(default)]
    force: Option<String>,
}

/// The refusal of a name already in use (two keys or tokens one cannot tell apart in the list
/// and the audit log); the form's "use it anyway" box overrides it.
fn name_taken(what: &str, name: &str) -> WebError {
    WebError::Conflict(format!(
        "an active {what} is already named {name:?}: choose another name, or tick \"use the name anyway\""
    ))
}

/// `POST /admin/keys`: a new agent key; its secret is shown once.
pub async fn create_key(State(state): State<Arc<WebState>>, posted: Posted<NewKeyForm>) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let scope = KeyScope::parse(&posted.form.scope)
        .ok_or_else(|| WebError::BadRequest("scope must be host or collector".to_owned()))?;
    let name = posted.form.name.trim();
    if name.len() > 200 || name.chars().any(char::is_control) {
        return Err(WebError::BadRequest("a key name has at most 200 printable characters".to_owned()));
    }
    let asset = match posted.form.asset.trim() {
        "" => None,
        text => {
            Some(text.parse::<i64>().map_err(|_| WebError::BadRequest(format!("asset id {text:?} is not a number")))?)
        }
    };
    if let Some(id) = asset {
        if scope != KeyScope::Host {
            return Err(WebError::BadRequest("only host keys are bound to an asset".to_owned()));
        }
        if !keys_admin::asset_exists(&state.app.db, id).await? {
            return Err(WebError::NotFound(format!("no asset {id}")));
        }
    }
    if posted.form.force.is_none() && keys_admin::name_taken(&state.app.db, false, name).await? {
        return Err(name_taken("agent key", name));
    }
    let (key_id, secret) =
        auth::create_agent_key(state.app.db.writer(), state.app.keys.secret_key(), scope, name, asset).await?;
    state.app.keys.clear();
    audit::record_from(
        &state.app.db,
        &user.session.name,
        "agent_key.create",
        &format!(
            "key {key_id} scope {} name {name}{}",
            scope.as_str(),
            asset.map(|a| format!(" bound to asset {a}")).unwrap_or_default()
        ),
        user.client_ip.as_deref(),
    )
    .await?;
    let file = keys_admin::key_file_text(&key_id, &secret);
    let shown = Secret {
        title: format!("Agent key {key_id} created"),
        lines: vec![("key_id".to_owned(), key_id), ("secret".to_owned(), secret)],
        note: "The secret is shown once. Save the file below on the agent host (mode 0600, e.g. \
               /etc/cmdb/agent-key.toml) and set the agent's key_file to it."
            .to_owned(),
        file: Some(("agent-key.toml".to_owned(), file)),
    };
    keys_page(&state, user, Some(shown)).await
}

/// The revoke-key form.
#[derive(Debug, Deserialize)]
pub struct RevokeKeyForm {
    key_id: String,
}

/// `POST /admin/keys/revoke`.
pub async fn revoke_key(
    State(state): State<Arc<WebState>>,
    posted: Posted<RevokeKeyForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    if !keys_admin::revoke_key(&state.app.db, &posted.form.key_id).await? {
        return Err(WebError::NotFound(format!("no active agent key {}", posted.form.key_id)));
    }
    state.app.keys.clear();
    audit::record_from(
        &state.app.db,
        &user.session.name,
        "agent_key.revoke",
        &format!("key {}", posted.form.key_id),
        user.client_ip.as_deref(),
    )
    .await?;
    Ok(Redirect::to("/admin/keys").into_response())
}

#[derive(Serialize)]
struct TokensPage {
    layout: Layout,
    tokens: Vec<TokenInfo>,
    secret: Option<Secret>,
    roles: [&'static str; 3],
}

async fn tokens_page(state: &WebState, user: &CurrentUser, secret: Option<Secret>) -> Result<Response, WebError> {
    let page = TokensPage {
        layout: user.layout(state, "admin"),
        tokens: keys_admin::list_tokens(&state.app.db).await?,
        secret,
        roles: ROLES,
    };
    Ok(templates::render("admin_tokens.html", &page)?.into_response())
}

/// `GET /admin/tokens`.
pub async fn tokens(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Admin)?;
    tokens_page(&state, &user, None).await
}

/// The new-token form.
#[derive(Debug, Deserialize)]
pub struct NewTokenForm {
    name: String,
    role: String,
    /// Create it even when an active token has this name.
    #[serde(default)]
    force: Option<String>,
}

/// `POST /admin/tokens`: a new API token with a role; shown once.
pub async fn create_token(
    State(state): State<Arc<WebState>>,
    posted: Posted<NewTokenForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let role = parse_role(&posted.form.role)?;
    let name = posted.form.name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(WebError::BadRequest("a token needs a name of 1 to 200 printable characters".to_owned()));
    }
    if posted.form.force.is_none() && keys_admin::name_taken(&state.app.db, true, name).await? {
        return Err(name_taken("token", name));
    }
    let token = auth::create_token(state.app.db.writer(), name, role).await?;
    audit::record_from(
        &state.app.db,
        &user.session.name,
        "token.create",
        &format!("token {name} role {}", role.as_str()),
        user.client_ip.as_deref(),
    )
    .await?;
    let shown = Secret {
        title: format!("Token {name} created"),
        lines: vec![("token".to_owned(), token)],
        note: "Shown once. Scripts send it as: Authorization: Bearer <token>".to_owned(),
        file: None,
    };
    tokens_page(&state, user, Some(shown)).await
}

/// The revoke-token form.
#[derive(Debug, Deserialize)]
pub struct RevokeTokenForm {
    id: i64,
}

/// `POST /admin/tokens/revoke`.
pub async fn revoke_token(
    State(state): State<Arc<WebState>>,
    posted: Posted<RevokeTokenForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    if !keys_admin::revoke_token(&state.app.db, posted.form.id).await? {
        return Err(WebError::NotFound(format!("no active token {}", posted.form.id)));
    }
    audit::record_from(
        &state.app.db,
        &user.session.name,
        "token.revoke",
        &format!("token id {}", posted.form.id),
        user.client_ip.as_deref(),
    )
    .await?;
    Ok(Redirect::to("/admin/tokens").into_response())
}

/// The audit log's filters as they appear in the URL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AuditParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<i64>,
}

#[derive(Serialize)]
struct AuditPage {
    layout: Layout,
    params: AuditParams,
    entries: Vec<Entry>,
    next: Option<String>,
}

const AUDIT_PAGE: i64 = 100;

/// `GET /admin/audit`.
pub async fn audit(
    State(state): State<Arc<WebState>>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    user.require(Role::Admin)?;
    let params: AuditParams = parse_query(raw.as_deref())?;
    let span = state.app.calendar.span(params.from.as_deref(), params.to.as_deref())?;
    let from = span.from.map(|t| t.timestamp_micros());
    // The audit log's `to` is exclusive; "to=DATE" includes all of DATE.
    let to = span.to.map(|t| t.timestamp_micros() + 1);
    let query =
        AuditQuery { actor: params.actor.clone(), action: params.action.clone(), from, to, before: params.before };
    let entries = audit::list(&state.app.db, &query, AUDIT_PAGE).await?;
    let next = (entries.len() as i64 == AUDIT_PAGE).then(|| {
        let before = entries.last().map(|e| e.id);
        format!(
            "/admin/audit?{}",
            serde_urlencoded::to_string(AuditParams { before, ..params.clone() }).unwrap_or_default()
        )
    });
    let page = AuditPage { layout: user.layout(&state, "admin"), params, entries, next };
    Ok(templates::render("admin_audit.html", &page)?.into_response())
}

#[derive(Serialize)]
struct WebhooksPage {
    layout: Layout,
    endpoints: Vec<webhooks::Endpoint>,
    deliveries: Vec<webhooks::Delivery>,
    kinds: Vec<&'static str>,
}

/// Delivery attempts the webhooks page lists.
const DELIVERIES_SHOWN: i64 = 100;

/// `GET /admin/webhooks`: the endpoints, their state and the latest delivery attempts.
pub async fn webhooks(State(state): State<Arc<WebState>>, user: CurrentUser) -> Result<Response, WebError> {
    user.require(Role::Admin)?;
    let db = &state.app.db;
    let page = WebhooksPage {
        layout: user.layout(&state, "admin"),
        endpoints: webhooks::list(db).await?,
        deliveries: webhooks::deliveries(db, None, DELIVERIES_SHOWN).await?,
        kinds: EventKind::ALL.iter().map(|kind| kind.as_str()).collect(),
    };
    Ok(templates::render("admin_webhooks.html", &page)?.into_response())
}

/// The new-webhook form: one checkbox per event kind.
#[derive(Deserialize)]
pub struct NewWebhookForm {
    #[serde(default)]
    url: String,
    #[serde(default)]
    secret: String,
    event_change: Option<String>,
    event_collection_error: Option<String>,
    event_stocktake_closed: Option<String>,
    event_asset: Option<String>,
}

impl std::fmt::Debug for NewWebhookForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebhookForm").field("url", &self.url).finish_non_exhaustive()
    }
}

/// `POST /admin/webhooks`: registers an endpoint.
pub async fn create_webhook(
    State(state): State<Arc<WebState>>,
    posted: Posted<NewWebhookForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let form = &posted.form;
    let events = [
        (&form.event_change, EventKind::Change),
        (&form.event_collection_error, EventKind::CollectionError),
        (&form.event_stocktake_closed, EventKind::StocktakeClosed),
        (&form.event_asset, EventKind::Asset),
    ]
    .into_iter()
    .filter(|(checked, _)| checked.is_some())
    .map(|(_, kind)| kind.as_str().to_owned())
    .collect();
    let new = webhooks::NewEndpoint { url: form.url.clone(), secret: form.secret.clone(), events };
    let created = webhooks::create(&state.app.db, state.app.keys.secret_key(), &new, &user.session.name).await?;
    audit::record_from(
        &state.app.db,
        &user.session.name,
        "webhook.create",
        &format!("endpoint {} {} ({})", created.id, created.url, created.events.join(", ")),
        user.client_ip.as_deref(),
    )
    .await?;
    Ok(Redirect::to("/admin/webhooks").into_response())
}

/// The delete-webhook form.
#[derive(Debug, Deserialize)]
pub struct DeleteWebhookForm {
    id: i64,
}

/// `POST /admin/webhooks/delete`.
pub async fn delete_webhook(
    State(state): State<Arc<WebState>>,
    posted: Posted<DeleteWebhookForm>,
) -> Result<Response, WebError> {
    let user = &posted.user;
    user.require(Role::Admin)?;
    let url = webhooks::delete(&state.app.db, posted.form.id).await?;
    audit::record_from(
        &state.app.db,
        &user.session.name,
        "webhook.delete",
        &format!("endpoint {} {url}", posted.form.id),
        user.client_ip.as_deref(),
    )
    .await?;
    Ok(Redirect::to("/admin/webhooks").into_response())
}
