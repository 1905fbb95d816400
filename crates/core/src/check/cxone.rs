//! The CXone steps of `check`: which of discovery, token and Reporting API failed, and what the
//! look-back's voice contacts say about the configured bot entry points and handover skills.

use super::{describe, Steps};
use crate::config::TenantConfig;
use crate::sources::cxone::wire::CompletedContact;
use crate::sources::http::{Endpoint, SourceError};
use std::collections::BTreeMap;

/// Which of the three CXone steps failed, by the endpoint of the error.
pub(super) fn cxone_failure(steps: &mut Steps, tenant: &TenantConfig, e: &SourceError) {
    let detail = describe(e);
    let issuer = tenant.cxone.issuer.trim_end_matches('/');
    match e.endpoint() {
        Endpoint::CxoneOpenidConfiguration => steps.fail(
            "cxone.discovery",
            detail,
            format!(
                "{issuer}/.well-known/openid-configuration must answer: set tenant.cxone.issuer \
                 to your CXone environment's issuer, e.g. https://cxone.niceincontact.com"
            ),
        ),
        Endpoint::CxoneToken | Endpoint::CxoneConfiguration => {
            steps.pass(
                "cxone.discovery",
                format!("{issuer}/.well-known/openid-configuration names the token endpoint"),
            );
            let hint = if e.endpoint() == Endpoint::CxoneConfiguration {
                "the API host could not be discovered: set tenant.cxone.api_endpoint to your \
                 area's API host (e.g. https://api-na1.niceincontact.com)"
                    .to_owned()
            } else {
                "the token endpoint refused the credentials: check access_key_id and \
                 access_key_secret (an access key of a CXone user, My Profile > Access Keys), \
                 client_id and client_secret (the registered application) and client_auth \
                 (basic or form); docs/setup.md, CXone"
                    .to_owned()
            };
            steps.fail("cxone.token", detail, hint);
        }
        _ => {
            steps.pass(
                "cxone.discovery",
                format!("{issuer}/.well-known/openid-configuration names the token endpoint"),
            );
            steps.pass("cxone.token", "a token was issued".into());
            let hint = match e.status() {
                Some(401 | 403) => "the token works but the Reporting API refuses it: give the \
                                    access key's user the Reporting API permissions (docs/setup.md, \
                                    CXone)"
                    .to_owned(),
                _ => "check tenant.cxone.api_endpoint and api_version (v30.0 or later)".to_owned(),
            };
            steps.fail("cxone.reporting", detail, hint);
        }
    }
    steps.skip_rest(
        &[
            "cxone.discovery",
            "cxone.token",
            "cxone.reporting",
            "cxone.contacts",
            "cxone.bot_entry",
        ],
        "CXone did not answer",
    );
}

/// Completed voice contacts in the look-back, and the bot entry points among them.
pub(super) fn contacts_steps(
    steps: &mut Steps,
    tenant: &TenantConfig,
    contacts: &[CompletedContact],
    hours: f64,
) {
    let voice: Vec<&CompletedContact> = contacts
        .iter()
        .filter(|c| {
            c.media_type_id
                .map_or(true, |m| m == crate::engine::correlation::MEDIA_TYPE_PHONE)
        })
        .collect();
    if voice.is_empty() {
        steps.warn(
            "cxone.contacts",
            format!("no completed voice contact in the last {hours:.1} h"),
            "run check at a busier time or with a longer --lookback-hours; if calls did come \
             in, the access key's user may not see this business unit's contacts"
                .into(),
        );
        steps.skip("cxone.bot_entry", "no contact to look at");
        return;
    }
    steps.pass(
        "cxone.contacts",
        format!(
            "{} completed voice contact(s) in the last {hours:.1} h",
            voice.len()
        ),
    );
    let rules = &tenant.rules;
    let mut pocs: BTreeMap<i64, (String, usize)> = BTreeMap::new();
    let mut skills: BTreeMap<i64, (String, usize)> = BTreeMap::new();
    for c in &voice {
        let e = pocs
            .entry(c.point_of_contact_id)
            .or_insert_with(|| (c.point_of_contact_name.clone(), 0));
        e.1 += 1;
        let e = skills
            .entry(c.skill_id)
            .or_insert_with(|| (c.skill_name.clone(), 0));
        e.1 += 1;
    }
    let seen = |map: &BTreeMap<i64, (String, usize)>, id: &i64| map.get(id).map_or(0, |e| e.1);
    let busiest = |map: &BTreeMap<i64, (String, usize)>| {
        let mut all: Vec<(&i64, &(String, usize))> = map.iter().collect();
        all.sort_by(|a, b| b.1 .1.cmp(&a.1 .1).then(a.0.cmp(b.0)));
        all.iter()
            .take(5)
            .map(|(id, (name, n))| format!("{id} {name:?} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let configured: Vec<String> = rules
        .bot_entry_points_of_contact
        .iter()
        .map(|id| format!("point of contact {id}: {}", seen(&pocs, id)))
        .chain(
            rules
                .bot_entry_skills
                .iter()
                .map(|id| format!("skill {id}: {}", seen(&skills, id))),
        )
        .collect();
    let listing = format!(
        "busiest points of contact: {}; busiest skills: {}",
        busiest(&pocs),
        busiest(&skills)
    );
    let handover: Vec<String> = rules
        .handover_skills
        .iter()
        .map(|id| format!("{id}: {}", seen(&skills, id)))
        .collect();
    let handover_text = if handover.is_empty() {
        "no handover_skills configured (rule 9 off)".to_owned()
    } else {
        format!("handover skills seen: {}", handover.join(", "))
    };
    if configured.is_empty() {
        steps.fail(
            "cxone.bot_entry",
            format!("no bot_entry_points_of_contact or bot_entry_skills configured; {listing}"),
            "list the point of contact the callers dial (or the skill that routes to the bot) in \
             [tenant.rules] bot_entry_points_of_contact / bot_entry_skills (docs/setup.md)"
                .into(),
        );
        return;
    }
    let missing: Vec<&String> = configured.iter().filter(|s| s.ends_with(": 0")).collect();
    let detail = format!("{}; {handover_text}", configured.join(", "));
    if missing.len() == configured.len() {
        steps.fail(
            "cxone.bot_entry",
            format!("no contact entered a configured bot entry: {detail}; {listing}"),
            "the configured ids never occur in the traffic: pick the bot's point of contact or \
             skill from the busiest ones listed (docs/setup.md, bot_entry)"
                .into(),
        );
    } else if !missing.is_empty() {
        steps.warn(
            "cxone.bot_entry",
            format!("some configured bot entries saw no contact: {detail}; {listing}"),
            "remove ids that are no longer used, or run check when they take calls".into(),
        );
    } else {
        steps.pass("cxone.bot_entry", detail);
    }
}
