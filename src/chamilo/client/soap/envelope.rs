//! The SOAP side of Chamilo (`registration.soap.php`, rpc/encoded, nusoap): request envelopes,
//! the `secret_key`, and decoding of answers that are followed by a debug dump.
//!
//! The dump after `</SOAP-ENV:Envelope>` echoes the request, secret included: it is never
//! read past the envelope's end, never stored and never logged.

use quick_xml::events::Event;
use quick_xml::Reader;
use sha1::{Digest, Sha1};

/// Marks the end of the part of a SOAP response that is read.
pub const ENVELOPE_END: &str = "</SOAP-ENV:Envelope>";

/// `sha1(ip . security_key)` in lower-case hex, as `WSHelperVerifyKey` computes it.
pub fn secret_key(ip: &str, security_key: &str) -> String {
    let mut h = Sha1::new();
    h.update(ip.as_bytes());
    h.update(security_key.as_bytes());
    hex::encode(h.finalize())
}

/// An rpc/encoded request: `<ns1:{operation}><{wrapper}>…params…</{wrapper}></ns1:{operation}>`.
/// Parameters with `None` are left out (nusoap treats a missing element as "unchanged").
pub fn envelope(operation: &str, wrapper: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut inner = String::new();
    for (name, value) in params {
        if let Some(v) = value {
            inner.push_str(&format!(
                "<{name}>{}</{name}>",
                quick_xml::escape::escape(*v)
            ));
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:SOAP-ENC=\"http://schemas.xmlsoap.org/soap/encoding/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:ns1=\"urn:WSRegistration\" SOAP-ENV:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\">\n<SOAP-ENV:Body>\n<ns1:{operation}>\n<{wrapper}>{inner}</{wrapper}>\n</ns1:{operation}>\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
    )
}

/// What a SOAP answer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapAnswer {
    /// The text of `<return>`.
    Return(String),
    /// A SOAP fault's `faultstring`.
    Fault(String),
}

/// Keeps the envelope, drops whatever follows it; `None` while the end is not there yet.
pub fn envelope_prefix(bytes: &[u8]) -> Option<&[u8]> {
    let end = ENVELOPE_END.as_bytes();
    bytes
        .windows(end.len())
        .position(|w| w == end)
        .map(|pos| &bytes[..pos + end.len()])
}

/// Decodes an envelope (already cut at its end) into its `<return>` text or fault string.
pub fn parse_answer(envelope: &str) -> Option<SoapAnswer> {
    let mut reader = Reader::from_str(envelope);
    let mut current: Option<String> = None;
    let mut text = String::new();
    let mut fault: Option<String> = None;
    let mut ret: Option<String> = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                current = Some(e.local_name().as_ref().to_owned());
                text.clear();
            }
            Event::Empty(e) if e.local_name().as_ref() == "return" => {
                ret = Some(String::new());
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else {
                    let name = r.into_inner();
                    text.push_str(match name.as_ref() {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "apos" => "'",
                        "quot" => "\"",
                        _ => "",
                    });
                }
            }
            Event::End(e) => {
                match e.local_name().as_ref() {
                    "return" if current.as_deref() == Some("return") => {
                        ret = Some(text.clone());
                    }
                    "faultstring" => fault = Some(text.clone()),
                    _ => {}
                }
                current = None;
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match (fault, ret) {
        (Some(f), _) => Some(SoapAnswer::Fault(f)),
        (None, Some(r)) => Some(SoapAnswer::Return(r)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_sha1_of_ip_and_key() {
        assert_eq!(
            secret_key("10.9.8.7", "9853011f058585cfe32643ee3d2c83ed"),
            "a19be0bcf308d25269cd55457f616b4c84e6cc98"
        );
    }

    #[test]
    fn envelope_escapes_and_omits() {
        let e = envelope(
            "WSEditUserCredentials",
            "editUserCredentials",
            &[("username", Some("o'dan&<x>")), ("password", None)],
        );
        assert!(
            e.contains("<username>o&apos;dan&amp;&lt;x&gt;</username>"),
            "{e}"
        );
        assert!(!e.contains("<password>"));
    }

    #[test]
    fn reads_only_the_envelope() {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><ns1:WSEditUserCredentialsResponse xmlns:ns1=\"urn:WSRegistration\"><return xsi:type=\"xsd:string\">1</return></ns1:WSEditUserCredentialsResponse></SOAP-ENV:Body></SOAP-ENV:Envelope><!-- secret_key=abc </SOAP-ENV:Envelope> -->";
        let cut = envelope_prefix(body.as_bytes()).unwrap();
        let cut = std::str::from_utf8(cut).unwrap();
        assert!(!cut.contains("secret_key"));
        assert_eq!(parse_answer(cut), Some(SoapAnswer::Return("1".into())));
        assert_eq!(envelope_prefix(b"<SOAP-ENV:Envelope>"), None);
    }

    #[test]
    fn fault_string() {
        let f = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"x\"><SOAP-ENV:Body><SOAP-ENV:Fault><faultcode>Server</faultcode><faultstring>Secret key is not correct or params are not correctly set</faultstring></SOAP-ENV:Fault></SOAP-ENV:Body></SOAP-ENV:Envelope>";
        assert_eq!(
            parse_answer(f),
            Some(SoapAnswer::Fault(
                "Secret key is not correct or params are not correctly set".into()
            ))
        );
    }
}
