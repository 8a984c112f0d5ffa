//! One row of a differential table: a request, where to send it, what to
//! expect from both proxies, and any declared (deliberate) differences.

use crate::client::HttpRequest;

#[derive(Clone, Debug)]
pub enum Payload {
    Http(HttpRequest),
    /// Exact bytes written to the socket (malformed-HTTP tests).
    Raw(Vec<u8>),
}

#[derive(Clone, Debug)]
pub enum Expect {
    /// The normalised field equals the value.
    Eq(String, String),
    /// The normalised field contains the substring.
    Contains(String, String),
    /// The field is not present at all.
    Absent(String),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    /// Placeholder name of the listener port the request goes to.
    pub listener: String,
    pub payload: Payload,
    /// Send the request this many times; the observation is then the sorted
    /// multiset of statuses and upstream names.
    pub repeat: usize,
    /// Whole case declared different: nothing is compared.
    pub differs_all: Option<String>,
    /// (field prefix, reason): fields starting with the prefix are skipped.
    pub differs: Vec<(String, String)>,
    pub expects: Vec<Expect>,
    /// Checked on Ferry only: what Ferry answers where it deliberately differs.
    pub ferry_expects: Vec<Expect>,
    /// Checked on Envoy only: Envoy's outcome where Ferry deliberately differs.
    pub envoy_expects: Vec<Expect>,
}

impl Case {
    /// `GET path` with `Host: example.com` over HTTP/1.1 to listener L1.
    pub fn get(name: &str, path: &str) -> Case {
        Case {
            name: name.to_string(),
            listener: "L1".to_string(),
            payload: Payload::Http(HttpRequest::get(path)),
            repeat: 1,
            differs_all: None,
            differs: Vec::new(),
            expects: Vec::new(),
            ferry_expects: Vec::new(),
            envoy_expects: Vec::new(),
        }
    }

    /// Raw bytes to listener L1.
    pub fn raw(name: &str, bytes: impl Into<Vec<u8>>) -> Case {
        let mut c = Case::get(name, "/");
        c.payload = Payload::Raw(bytes.into());
        c
    }

    fn http(&mut self) -> &mut HttpRequest {
        match &mut self.payload {
            Payload::Http(r) => r,
            Payload::Raw(_) => panic!("case {}: HTTP option on a raw case", self.name),
        }
    }

    pub fn method(mut self, method: &str) -> Case {
        self.http().method = method.to_string();
        self
    }

    /// Sets `Host` (HTTP/1.1) / `:authority` (h2).
    pub fn host(mut self, host: &str) -> Case {
        self.http().authority = Some(host.to_string());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Case {
        self.http()
            .headers
            .push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: &str) -> Case {
        self.http().body = body.as_bytes().to_vec();
        self
    }

    /// Use HTTP/2 with prior knowledge (h2c).
    pub fn h2(mut self) -> Case {
        self.http().h2 = true;
        self
    }

    pub fn listener(mut self, placeholder: &str) -> Case {
        self.listener = placeholder.to_string();
        self
    }

    pub fn repeat(mut self, n: usize) -> Case {
        self.repeat = n.max(1);
        self
    }

    /// Declares the whole case a deliberate difference: not compared.
    pub fn differs(mut self, reason: &str) -> Case {
        self.differs_all = Some(reason.to_string());
        self
    }

    /// Declares a deliberate difference in the fields starting with `field`.
    pub fn differs_field(mut self, field: &str, reason: &str) -> Case {
        self.differs.push((field.to_string(), reason.to_string()));
        self
    }

    /// Expects the normalised `field` (e.g. `status`, `header:server`,
    /// `upstream`, `upstream.header:x-foo`, `body`) to equal `value` on
    /// both proxies.
    pub fn expect(mut self, field: &str, value: &str) -> Case {
        self.expects
            .push(Expect::Eq(field.to_string(), value.to_string()));
        self
    }

    pub fn expect_contains(mut self, field: &str, substring: &str) -> Case {
        self.expects
            .push(Expect::Contains(field.to_string(), substring.to_string()));
        self
    }

    pub fn expect_absent(mut self, field: &str) -> Case {
        self.expects.push(Expect::Absent(field.to_string()));
        self
    }

    /// Expects `field == value` from Envoy only (Envoy's own outcome where Ferry deliberately
    /// differs, shown beside Ferry's).
    pub fn expect_envoy(mut self, field: &str, value: &str) -> Case {
        self.envoy_expects
            .push(Expect::Eq(field.to_string(), value.to_string()));
        self
    }

    /// Expects `field == value` from Ferry only (its own answer where it deliberately differs).
    pub fn expect_ferry(mut self, field: &str, value: &str) -> Case {
        self.ferry_expects
            .push(Expect::Eq(field.to_string(), value.to_string()));
        self
    }

    /// Expects `field` to be absent from Ferry's observation only.
    pub fn expect_ferry_absent(mut self, field: &str) -> Case {
        self.ferry_expects.push(Expect::Absent(field.to_string()));
        self
    }

    pub fn expect_status(self, status: u16) -> Case {
        self.expect("status", &status.to_string())
    }

    /// Expects the echo upstream with this name to have answered.
    pub fn expect_upstream(self, name: &str) -> Case {
        self.expect("upstream", name)
    }

    pub fn expect_body(self, body: &str) -> Case {
        self.expect("body", body)
    }

    /// The declared reason if `field` is excluded from comparison.
    pub fn skip_reason(&self, field: &str) -> Option<&str> {
        self.differs
            .iter()
            .find(|(prefix, _)| field.starts_with(prefix.as_str()))
            .map(|(_, reason)| reason.as_str())
    }
}
