//! NICE CXone: the Reporting API client (see `wire` for the types it reads).
//!
//! [`CxoneClient`] authenticates (OIDC discovery, password grant with the access key, token cached
//! and refreshed at 80 % of its lifetime, one re-authentication on a 401), finds the API host
//! (config or `cxone-configuration` discovery from the `id_token`), and reads completed voice
//! contacts in `skip`/`top` pages plus the per-contact drill-down resources (api/cxone.md §1, §2,
//! §4). It builds requests and parses bodies only: timeouts, retries, rate limits and request
//! accounting belong to the shared [`HttpLayer`]. It does not correlate or judge contacts.

pub mod wire;

use crate::config::{ClientAuth, CxoneConfig};
use crate::sources::http::{
    percent_encode, query_string, BudgetHandle, Endpoint, HttpLayer, HttpRequest, HttpResponse,
    RequestObserver, RetryCause, Source, SourceError,
};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use wire::{
    CompletedContact, CxoneConfiguration, OpenIdConfiguration, SingleContactEnvelope, StateHistory,
    TokenResponse,
};

/// `mediaTypeId` of a phone call (api/cxone.md §2.1).
const MEDIA_TYPE_PHONE_CALL: &str = "4";

/// Token lifetime assumed when the token response has no `expires_in`.
const DEFAULT_EXPIRES_IN_SECONDS: i64 = 3600;

/// One read of `contacts/completed`: the contacts in `lastUpdateTime` order.
#[derive(Debug, Clone, Default)]
pub struct ContactsBatch {
    pub contacts: Vec<CompletedContact>,
    /// `lastPollTime` of the first page (the server's suggestion for the next `updatedSince`).
    pub last_poll_time: Option<DateTime<Utc>>,
    /// Pages read (a 204 counts as a page).
    pub pages: u32,
    /// `max_pages` was reached with a full last page: more contacts may follow. The caller
    /// continues next cycle from the last contact's `lastUpdateTime`.
    pub truncated: bool,
}

/// One page of `contacts/completed`.
#[derive(Debug, Clone, Default)]
pub struct ContactsPage {
    /// In `lastUpdateTime` order.
    pub contacts: Vec<CompletedContact>,
    /// The page's `lastPollTime` (the server's suggestion for the next `updatedSince`).
    pub last_poll_time: Option<DateTime<Utc>>,
    /// More contacts follow this page (at `skip` + the contacts received).
    pub more: bool,
}

/// Whether more `contacts/completed` pages follow one that brought `received` contacts of `top`
/// asked for at `skip`: an empty page ends the read; a `_links.next` link says there is more;
/// otherwise `totalRecords` decides when sent, and only when the server sends neither does a
/// short page end the read (a server may cap `top` below what was asked, so a short page alone
/// is no proof of the end).
pub fn more_pages(
    received: usize,
    top: u32,
    skip: u64,
    total_records: Option<i64>,
    has_next_link: bool,
) -> bool {
    if received == 0 {
        return false;
    }
    if has_next_link {
        return true;
    }
    if let Some(total) = total_records {
        return skip.saturating_add(received as u64) < total.max(0) as u64;
    }
    received >= top as usize
}

/// A cached access token and when to replace it.
struct CachedToken {
    access_token: SecretString,
    refresh_at: Instant,
    /// Bumped on every new token, so two callers that both saw a 401 re-authenticate once.
    generation: u64,
}

/// What authentication has learned so far (guarded by one mutex: one token request at a time).
#[derive(Default)]
struct AuthState {
    token_endpoint: Option<String>,
    token: Option<CachedToken>,
    /// `{api_endpoint}/inContactAPI/services/{version}`, once known.
    api_base: Option<String>,
    generation: u64,
}

/// The CXone Reporting API client of one tenant.
pub struct CxoneClient {
    http: HttpLayer,
    config: CxoneConfig,
    auth: Mutex<AuthState>,
}

impl std::fmt::Debug for CxoneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CxoneClient")
            .field("issuer", &self.config.issuer)
            .field("api_version", &self.config.api_version)
            .finish_non_exhaustive()
    }
}

impl CxoneClient {
    /// A client for one tenant with a request budget of its own; no request is made until the
    /// first call.
    pub fn new(
        config: &CxoneConfig,
        observer: Arc<dyn RequestObserver>,
    ) -> Result<CxoneClient, SourceError> {
        let budget = BudgetHandle::private(Source::Cxone, "", &config.http);
        CxoneClient::with_budget(config, observer, budget)
    }

    /// A client for one tenant drawing on `budget` (its API host's, shared with other tenants).
    pub fn with_budget(
        config: &CxoneConfig,
        observer: Arc<dyn RequestObserver>,
        budget: BudgetHandle,
    ) -> Result<CxoneClient, SourceError> {
        Ok(CxoneClient {
            http: HttpLayer::with_budget(Source::Cxone, &config.http, observer, budget)?,
            config: config.clone(),
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// Reads completed voice contacts updated since `updated_since`, oldest update first, at most
    /// `max_pages` pages of `page_size`.
    pub async fn completed_contacts(
        &self,
        updated_since: DateTime<Utc>,
        max_pages: u32,
    ) -> Result<ContactsBatch, SourceError> {
        let max_pages = max_pages.max(1);
        let mut batch = ContactsBatch::default();
        let mut skip: u64 = 0;
        loop {
            let page = self.completed_page(updated_since, skip).await?;
            batch.pages += 1;
            if batch.last_poll_time.is_none() {
                batch.last_poll_time = page.last_poll_time;
            }
            let received = page.contacts.len();
            batch.contacts.extend(page.contacts);
            if !page.more {
                break;
            }
            if batch.pages >= max_pages {
                batch.truncated = true;
                break;
            }
            skip += received as u64;
        }
        Ok(batch)
    }

    /// One page of completed voice contacts updated since `updated_since` (inclusive), oldest
    /// update first, skipping the first `skip`. A 204 is an empty last page. Whether more pages
    /// follow is told by `_links.next` or `totalRecords` when the server sends them, and only
    /// otherwise by a full page ([`more_pages`]).
    pub async fn completed_page(
        &self,
        updated_since: DateTime<Utc>,
        skip: u64,
    ) -> Result<ContactsPage, SourceError> {
        let top = self.config.page_size.max(1);
        let since = updated_since.to_rfc3339_opts(SecondsFormat::Millis, true);
        let query = query_string(&[
            ("updatedSince", since),
            ("orderBy", "lastUpdateTime asc".to_owned()),
            ("mediaTypeId", MEDIA_TYPE_PHONE_CALL.to_owned()),
            ("top", top.to_string()),
            ("skip", skip.to_string()),
        ]);
        let response = self
            .api_get(
                Endpoint::CxoneContactsCompleted,
                &format!("/contacts/completed?{query}"),
            )
            .await?;
        if response.is_empty() {
            return Ok(ContactsPage::default());
        }
        let page = response.parse_with(wire::parse_completed_page)?;
        let received = page.completed_contacts.len();
        let next_link = page
            .links
            .as_ref()
            .and_then(|l| l.next.as_deref())
            .is_some_and(|n| !n.trim().is_empty());
        Ok(ContactsPage {
            more: more_pages(received, top, skip, page.total_records, next_link),
            contacts: page.completed_contacts,
            last_poll_time: page.last_poll_time,
        })
    }

    /// One contact (`GET /contacts/{id}`); `None` on 404 or 204.
    pub async fn contact(&self, contact_id: i64) -> Result<Option<CompletedContact>, SourceError> {
        match self
            .api_get(Endpoint::CxoneContact, &format!("/contacts/{contact_id}"))
            .await
        {
            Ok(response) if response.is_empty() => Ok(None),
            Ok(response) => Ok(Some(response.json::<SingleContactEnvelope>()?.contact)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A contact's state history: `/contacts/{id}/state-history`, or the older `/statehistory`
    /// when the newer path answers 404. A 204 is an empty history.
    pub async fn state_history(&self, contact_id: i64) -> Result<StateHistory, SourceError> {
        let response = match self
            .api_get(
                Endpoint::CxoneStateHistory,
                &format!("/contacts/{contact_id}/state-history"),
            )
            .await
        {
            Err(e) if e.status() == Some(404) => {
                self.api_get(
                    Endpoint::CxoneStateHistory,
                    &format!("/contacts/{contact_id}/statehistory"),
                )
                .await?
            }
            other => other?,
        };
        if response.is_empty() {
            return Ok(StateHistory::default());
        }
        response.json()
    }

    /// GETs `path_and_query` under the API base with a bearer token; on a 401 re-authenticates
    /// once and retries once.
    async fn api_get(
        &self,
        endpoint: Endpoint,
        path_and_query: &str,
    ) -> Result<HttpResponse, SourceError> {
        let (token, base, generation) = self.token().await?;
        let request = HttpRequest::get(endpoint, format!("{base}{path_and_query}"))
            .accept_json()
            .bearer(&token);
        match self.http.send(&request).await {
            Err(e) if e.status() == Some(401) => {
                tracing::debug!(endpoint = %endpoint, "CXone answered 401; re-authenticating once");
                self.http
                    .observer()
                    .observe_retry(Source::Cxone, RetryCause::Reauthenticate);
                self.invalidate(generation).await;
                let (token, base, _) = self.token().await?;
                let request = HttpRequest::get(endpoint, format!("{base}{path_and_query}"))
                    .accept_json()
                    .bearer(&token);
                self.http.send(&request).await.map_err(|e| match e {
                    SourceError::HttpStatus { status: 401, .. } => SourceError::Auth {
                        endpoint,
                        message: format!(
                            "still HTTP 401 after re-authenticating: {e} (check the access key's permissions)"
                        ),
                    },
                    other => other,
                })
            }
            other => other,
        }
    }

    /// Drops the cached token if it is still the one that got the 401.
    async fn invalidate(&self, generation: u64) {
        let mut auth = self.auth.lock().await;
        if auth.token.as_ref().map(|t| t.generation) == Some(generation) {
            auth.token = None;
        }
    }

    /// A valid access token, the API base and the token's generation; authenticates when the
    /// cached token is missing or due for refresh.
    async fn token(&self) -> Result<(SecretString, String, u64), SourceError> {
        let mut auth = self.auth.lock().await;
        if let (Some(token), Some(base)) = (&auth.token, &auth.api_base) {
            if Instant::now() < token.refresh_at {
                return Ok((token.access_token.clone(), base.clone(), token.generation));
            }
        }
        let token_endpoint = match &auth.token_endpoint {
            Some(url) => url.clone(),
            None => {
                let url = self.discover_token_endpoint().await?;
                auth.token_endpoint = Some(url.clone());
                url
            }
        };
        let response = self.request_token(&token_endpoint).await?;
        if auth.api_base.is_none() {
            let api_endpoint = match &self.config.api_endpoint {
                Some(configured) => configured.clone(),
                None => self.discover_api_endpoint(&response).await?,
            };
            auth.api_base = Some(format!(
                "{}/inContactAPI/services/{}",
                api_endpoint.trim_end_matches('/'),
                normalized_version(&self.config.api_version)
            ));
        }
        let expires_in = response
            .expires_in
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_EXPIRES_IN_SECONDS);
        // Refresh at 80 % of the lifetime so a token never expires mid-cycle.
        let refresh_after = Duration::from_millis((expires_in as u64).saturating_mul(800));
        auth.generation += 1;
        let generation = auth.generation;
        let access_token = SecretString::from(response.access_token.clone());
        auth.token = Some(CachedToken {
            access_token: access_token.clone(),
            refresh_at: Instant::now() + refresh_after,
            generation,
        });
        let base = auth.api_base.clone().unwrap_or_default();
        Ok((access_token, base, generation))
    }

    /// `GET {issuer}/.well-known/openid-configuration` -> `token_endpoint`.
    async fn discover_token_endpoint(&self) -> Result<String, SourceError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let response = self
            .http
            .send(&HttpRequest::get(Endpoint::CxoneOpenidConfiguration, url).accept_json())
            .await?;
        let document: OpenIdConfiguration = response.json()?;
        if document.token_endpoint.trim().is_empty() {
            return Err(response.decode_error("`token_endpoint` is empty"));
        }
        Ok(document.token_endpoint)
    }

    /// The password grant with the access key. A token request changes nothing on the server,
    /// so the layer may retry it on connect errors, timeouts and 5xx like a GET.
    async fn request_token(&self, token_endpoint: &str) -> Result<TokenResponse, SourceError> {
        use secrecy::ExposeSecret;
        let access_key_secret = self.config.access_key_secret.expose_secret();
        let client_secret = self.config.client_secret.expose_secret();
        let mut fields = vec![
            ("grant_type", "password"),
            ("username", self.config.access_key_id.as_str()),
            ("password", access_key_secret),
        ];
        if self.config.client_auth == ClientAuth::Form {
            fields.push(("client_id", self.config.client_id.as_str()));
            fields.push(("client_secret", client_secret));
        }
        let mut request = HttpRequest::post_form(Endpoint::CxoneToken, token_endpoint, &fields)
            .side_effect_free()
            .accept_json();
        if self.config.client_auth == ClientAuth::Basic {
            request = request.basic_auth(&self.config.client_id, &self.config.client_secret);
        }
        let response = self.http.send(&request).await.map_err(|e| match e {
            SourceError::HttpStatus {
                status: status @ (400 | 401 | 403),
                description,
                ..
            } => SourceError::Auth {
                endpoint: Endpoint::CxoneToken,
                message: format!(
                    "token endpoint answered HTTP {status}{} (check client id/secret, client_auth and the access key)",
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                ),
            },
            other => other,
        })?;
        let token: TokenResponse = response.json()?;
        if token.access_token.trim().is_empty() {
            return Err(response.decode_error("`access_token` is empty"));
        }
        Ok(token)
    }

    /// `GET {iss}/.well-known/cxone-configuration?tenantId=` with `iss` and `tenantId` from the
    /// `id_token` payload (decoded, not verified: it only routes us).
    async fn discover_api_endpoint(&self, token: &TokenResponse) -> Result<String, SourceError> {
        let id_token = token.id_token.as_deref().ok_or_else(|| SourceError::Auth {
            endpoint: Endpoint::CxoneToken,
            message: "the token response has no id_token and tenant.cxone.api_endpoint is not set"
                .to_owned(),
        })?;
        let claims = decode_jwt_claims(id_token).map_err(|message| SourceError::Auth {
            endpoint: Endpoint::CxoneToken,
            message: format!("cannot read the id_token: {message}"),
        })?;
        let url = format!(
            "{}/.well-known/cxone-configuration?tenantId={}",
            claims.iss.trim_end_matches('/'),
            percent_encode(&claims.tenant_id)
        );
        let response = self
            .http
            .send(&HttpRequest::get(Endpoint::CxoneConfiguration, url).accept_json())
            .await?;
        let document: CxoneConfiguration = response.json()?;
        if document.api_endpoint.trim().is_empty() {
            return Err(response.decode_error("`api_endpoint` is empty"));
        }
        Ok(document.api_endpoint)
    }
}

/// The two `id_token` claims that route us to the tenant's API host.
#[derive(Debug, serde::Deserialize)]
struct RoutingClaims {
    iss: String,
    #[serde(rename = "tenantId")]
    tenant_id: String,
}

/// Decodes a JWT's payload (base64url JSON) without checking its signature.
fn decode_jwt_claims(jwt: &str) -> Result<RoutingClaims, String> {
    use base64::Engine;
    let payload = jwt
        .split('.')
        .nth(1)
        .ok_or_else(|| "not a JWT (no payload segment)".to_owned())?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("payload is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("payload lacks `iss`/`tenantId`: {e}"))
}

/// `v30.0` stays as it is; `30` and `30.0` become `v30.0`.
fn normalized_version(version: &str) -> String {
    let version = version.trim();
    if version.starts_with(['v', 'V']) {
        return version.to_owned();
    }
    if version.contains('.') {
        format!("v{version}")
    } else {
        format!("v{version}.0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routing claims come out of an unsigned JWT payload, padded or not.
    #[test]
    fn jwt_claims_are_decoded() {
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"iss":"https://cxone.example","tenantId":"t-1","icBUId":4600000}"#);
        let claims = decode_jwt_claims(&format!("eyJhbGciOiJub25lIn0.{payload}.sig"))
            .expect("valid JWT payload");
        assert_eq!(claims.iss, "https://cxone.example");
        assert_eq!(claims.tenant_id, "t-1");
        assert!(decode_jwt_claims("garbage").is_err());
    }

    /// API versions are written as `vN.0` whatever form the config used.
    #[test]
    fn versions_are_normalized() {
        assert_eq!(normalized_version("v30.0"), "v30.0");
        assert_eq!(normalized_version("30"), "v30.0");
        assert_eq!(normalized_version("32.0"), "v32.0");
    }
}
