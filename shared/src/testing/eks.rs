//! A scripted EKS API.

use serde_json::Value;

use crate::ports::eks::{EksApi, EksCallError, EksError};

/// An EKS double: each path answers from a script of responses, the last repeating;
/// every call is recorded.
pub struct ScriptedEks {
    answers: std::sync::Mutex<std::collections::HashMap<String, Vec<Result<Value, EksError>>>>,
    calls: std::sync::Mutex<Vec<String>>,
    bodies: std::sync::Mutex<Vec<Value>>,
}

impl ScriptedEks {
    /// A double answering each `METHOD path` from its script.
    #[must_use]
    pub fn new(script: &[(&str, Vec<Result<Value, EksError>>)]) -> Self {
        Self {
            answers: std::sync::Mutex::new(
                script
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            ),
            calls: std::sync::Mutex::new(Vec::new()),
            bodies: std::sync::Mutex::new(Vec::new()),
        }
    }
    /// Every call, as `METHOD path`, in order.
    #[must_use]
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
    /// The body of every call (`null` for none), in the order of [`Self::calls`].
    #[must_use]
    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl EksApi for ScriptedEks {
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, EksCallError> {
        let key = format!("{method} {path}");
        if let Ok(mut c) = self.calls.lock() {
            c.push(key.clone());
        }
        if let Ok(mut b) = self.bodies.lock() {
            b.push(body.cloned().unwrap_or(Value::Null));
        }
        let mut answers = self
            .answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let script = answers
            .get_mut(&key)
            .unwrap_or_else(|| panic!("unscripted {key}"));
        let answer = if script.len() > 1 {
            script.remove(0)
        } else {
            script[0].clone()
        };
        answer.map_err(EksCallError::Refused)
    }
}
