//! `registration.soap.php`: the two SOAP operations the proxy needs, with nusoap's habits.
//!
//! Authentication is `secret_key = sha1(ip . security_key)` where `ip` is the first
//! `X-Forwarded-For` entry (not checked to be an address) or else the socket address. Every
//! envelope is followed by a large debug comment that echoes the request, secret included,
//! exactly the hazard the real service has.

use std::collections::HashMap;

use quick_xml::events::Event;
use quick_xml::Reader;
use sha1::{Digest, Sha1};

use super::state::{sql_eq, ChamiloState};

/// One SOAP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// A parsed rpc/encoded call: the operation's local name and its leaf parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SoapCall {
    pub operation: String,
    pub params: HashMap<String, String>,
}

/// `sha1(ip . security_key)` in lower-case hex.
pub fn secret_key(ip: &str, security_key: &str) -> String {
    let mut h = Sha1::new();
    h.update(ip.as_bytes());
    h.update(security_key.as_bytes());
    hex::encode(h.finalize())
}

/// Parses the first element inside `Body` and the text of its leaf descendants.
pub fn parse_call(xml: &str) -> Option<SoapCall> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut call = SoapCall::default();
    let mut text = String::new();
    let mut body_depth: Option<usize> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                if body_depth.is_none() && name == "Body" {
                    body_depth = Some(path.len() + 1);
                } else if body_depth.is_some_and(|d| path.len() == d) && call.operation.is_empty() {
                    call.operation = name.clone();
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = e.local_name().as_ref().to_owned();
                if body_depth.is_some_and(|d| path.len() == d) && call.operation.is_empty() {
                    call.operation = name;
                } else if body_depth.is_some_and(|d| path.len() > d) {
                    call.params.entry(name).or_default();
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(t) => text.push_str(&t.into_inner()),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let name = r.into_inner();
                    let resolved = match name.as_ref() {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "apos" => "'",
                        "quot" => "\"",
                        _ => "",
                    };
                    text.push_str(resolved);
                }
            }
            Event::End(_) => {
                let name = path.pop()?;
                if body_depth.is_some_and(|d| path.len() > d) {
                    call.params.entry(name).or_insert_with(|| text.clone());
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Some(call)
}

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/" xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/">"#;

fn debug_dump(request: &str, ip: &str, size: usize) -> String {
    // nusoap echoes the request (secret included) and its parse state; `--` cannot appear
    // inside an XML comment, so it is softened like nusoap does.
    let mut dump = format!(
        "<!--\n{} nusoap_server: ip {ip}\nrequest:\n{}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"),
        request.replace("--", "- -")
    );
    while dump.len() < size {
        dump.push_str("nusoap_server: parsed parameter; serialize_val: value=string; ");
    }
    dump.push_str("-->");
    dump
}

fn response(op: &str, value: &str, request: &str, ip: &str, debug: usize) -> SoapReply {
    SoapReply {
        status: 200,
        content_type: "text/xml; charset=UTF-8",
        body: format!(
            "{ENVELOPE_OPEN}<SOAP-ENV:Body><ns1:{op}Response xmlns:ns1=\"urn:WSRegistration\"><return xsi:type=\"xsd:string\">{value}</return></ns1:{op}Response></SOAP-ENV:Body></SOAP-ENV:Envelope>{}",
            debug_dump(request, ip, debug)
        ),
    }
}

fn fault(code: &str, message: &str, iso: bool, request: &str, ip: &str, debug: usize) -> SoapReply {
    let decl = if iso { "ISO-8859-1" } else { "UTF-8" };
    SoapReply {
        status: 500,
        content_type: "text/xml; charset=UTF-8",
        body: format!(
            "<?xml version=\"1.0\" encoding=\"{decl}\"?><SOAP-ENV:Envelope SOAP-ENV:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"\n  xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"\n  xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\"\n  xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n  xmlns:SOAP-ENC=\"http://schemas.xmlsoap.org/soap/encoding/\">\n<SOAP-ENV:Body><SOAP-ENV:Fault><faultcode xsi:type=\"xsd:string\">{code}</faultcode><faultactor xsi:type=\"xsd:string\"></faultactor><faultstring xsi:type=\"xsd:string\">{}</faultstring><detail xsi:type=\"xsd:string\"></detail></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>{}",
            quick_xml::escape::escape(message),
            debug_dump(request, ip, debug / 10)
        ),
    }
}

/// The HTML error page Chamilo shows for an SQL error (HTTP 200).
pub fn html_error_page() -> String {
    "<!DOCTYPE html>\n<html lang=\"en\" class=\"no-js\">\n<head><title>Chamilo</title></head>\n<body><div class=\"alert alert-danger\">An error has occured. Please contact your system administrator.</div></body></html>\n".to_owned()
}

/// Operations the stand-in implements.
pub const OPERATIONS: &[&str] = &["WSEditUserCredentials", "WSUpdateGroup"];

/// A refusal the way `registration.soap.php` refuses (a wrong secret key, for one): HTTP 500
/// with a `SOAP-ENV:Fault` whose `faultcode` is `Server` and `faultstring` is `message`.
pub fn refusal(message: &str, request: &str, ip: &str, debug_bytes: usize) -> SoapReply {
    fault("Server", message, true, request, ip, debug_bytes)
}

/// The operation a request calls (what the call counters count), `""` when unparsable.
pub fn operation_of(request: &str) -> String {
    parse_call(request)
        .map(|call| call.operation)
        .unwrap_or_default()
}

/// Answers one SOAP request at the second `now`. Returns the operation name (for call
/// counters) and the reply.
pub fn handle(
    state: &mut ChamiloState,
    security_key: &str,
    ip: &str,
    request: &str,
    debug_bytes: usize,
    now: u64,
) -> (String, SoapReply) {
    let call = parse_call(request).unwrap_or_default();
    let op = call.operation.clone();
    if !OPERATIONS.contains(&op.as_str()) {
        let msg = format!("Operation '{op}' is not defined in the WSDL for this service");
        let reply = fault("SOAP-ENV:Client", &msg, false, request, ip, debug_bytes);
        return (op, reply);
    }
    let Some(given) = call.params.get("secret_key") else {
        // PHP fatal inside nusoap: empty body.
        let reply = SoapReply {
            status: 500,
            content_type: "text/html; charset=UTF-8",
            body: String::new(),
        };
        return (op, reply);
    };
    if *given != secret_key(ip, security_key) {
        let msg = "Secret key is not correct or params are not correctly set";
        return (op, refusal(msg, request, ip, debug_bytes));
    }
    let p = |k: &str| call.params.get(k).map(String::as_str).unwrap_or("");
    let value = match op.as_str() {
        "WSEditUserCredentials" => {
            let target = state
                .users_by_extra_value(p("original_user_id_name"), p("original_user_id_value"))
                .first()
                .map(|u| (u.id, u.active));
            let new_name = p("username");
            match target {
                None => "0",
                Some((_, active)) if active != 1 => "0",
                Some(_) if new_name.contains('\'') => {
                    // The unescaped SQL fails and Chamilo renders its error page.
                    let reply = SoapReply {
                        status: 200,
                        content_type: "text/html; charset=UTF-8",
                        body: html_error_page(),
                    };
                    return (op, reply);
                }
                Some((id, _)) => {
                    let taken = state
                        .user_by_username(new_name)
                        .is_some_and(|u| u.id != id && sql_eq(&u.username, new_name));
                    if taken || new_name.is_empty() || !state.rename_user(id, new_name) {
                        "0"
                    } else {
                        let password = p("password");
                        if !password.is_empty() {
                            state.edit_user_at(id, now, |u| u.password = password.to_owned());
                        }
                        "1"
                    }
                }
            }
        }
        // WSUpdateGroup
        _ => {
            let id = super::state::php_int(p("id")) as u64;
            let name = p("name").to_owned();
            let description = call.params.get("description").cloned();
            if let Some(g) = state.group_mut(id) {
                g.name = name;
                if let Some(d) = description {
                    g.description = d;
                }
            }
            "1"
        }
    };
    let reply = response(&op, value, request, ip, debug_bytes);
    (op, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_matches_transcript() {
        assert_eq!(
            secret_key("127.0.0.1", "9853011f058585cfe32643ee3d2c83ed"),
            "d659c82b6376362e92dd7ad1e1c23b3fd3372a16"
        );
        assert_eq!(
            secret_key("scim-sidecar", "9853011f058585cfe32643ee3d2c83ed"),
            "7f7ffde3cb4f8d94e24d0013d9bb687e8349af99"
        );
    }

    #[test]
    fn parses_rpc_call() {
        let xml = r#"<?xml version="1.0"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body><ns1:WSEditUserCredentials><editUserCredentials><username>o&apos;dan</username><secret_key>abc</secret_key><password/></editUserCredentials></ns1:WSEditUserCredentials></SOAP-ENV:Body></SOAP-ENV:Envelope>"#;
        let call = parse_call(xml).unwrap();
        assert_eq!(call.operation, "WSEditUserCredentials");
        assert_eq!(call.params["username"], "o'dan");
        assert_eq!(call.params["secret_key"], "abc");
        assert_eq!(call.params["password"], "");
    }
}
