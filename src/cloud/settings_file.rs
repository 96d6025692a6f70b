//! The deployment's settings file: what `cloud up` learnt of a deployment (the stack's outputs
//! on AWS, the names it made on the emulators), at `WORKSPACE/cloud/{deployment}.json`, which
//! the `--cloud` commands, `cloud status` and `worker` read. A flag or an `AVESA_CLOUD_*`
//! variable overrides the file, setting by setting (`CloudSettingArgs` in the CLI merges them).
//!
//! The file is written whole (a temporary file in the same folder, synced, then renamed over
//! the old one), so a reader sees the old settings or the new ones, never half of each. A file
//! that cannot be read is refused naming the file and the field, never skipped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{CloudError, CloudSettings, Setting};

/// The outputs of `infrastructure/backfill.yaml` that are settings.
pub const SETTING_OUTPUTS: [(&str, Setting); 5] = [
    ("StateMachineArn", Setting::StateMachineArn),
    ("QueueUrl", Setting::QueueUrl),
    ("DataBucket", Setting::Bucket),
    ("TablePrefix", Setting::TablePrefix),
    ("LogGroup", Setting::LogGroup),
];

/// The template's other outputs: kept in the file (`outputs`) for reference.
pub const OTHER_OUTPUTS: [&str; 6] = [
    "DeadLetterQueueUrl",
    "WorkerRoleArn",
    "WorkerInstanceProfileArn",
    "StateMachineLogGroup",
    "DashboardName",
    "OperatorPolicyArn",
];

/// What the command that prints the outputs is, for the messages.
const OUTPUTS_COMMAND: &str =
    "aws cloudformation describe-stacks --stack-name STACK --query 'Stacks[0].Outputs'";

/// One deployment's settings as the file holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentSettings {
    /// The deployment's name (the stack name on AWS).
    pub deployment: String,
    /// Where the values came from: `stack outputs` or `emulators`.
    pub origin: String,
    /// The region the deployment is in, when known (from the state machine's ARN).
    pub region: Option<String>,
    /// The five settings, each present.
    pub values: BTreeMap<&'static str, String>,
    /// The template's other outputs.
    pub outputs: BTreeMap<String, String>,
}

/// Where the settings file of `deployment` lives in the workspace `root`.
pub fn path(root: &Path, deployment: &str) -> PathBuf {
    root.join("cloud").join(format!("{deployment}.json"))
}

/// The region of an ARN (`arn:PARTITION:SERVICE:REGION:…`).
pub fn region_of(arn: &str) -> Option<String> {
    let region = arn.split(':').nth(3)?;
    (arn.starts_with("arn:") && !region.is_empty()).then(|| region.to_string())
}

impl DeploymentSettings {
    /// The settings of a deployment made on the emulators.
    pub fn from_settings(deployment: &str, origin: &str, settings: &CloudSettings) -> Self {
        let values = Setting::ALL
            .iter()
            .filter_map(|s| Some((s.field(), settings.require(*s).ok()?.to_string())))
            .collect();
        DeploymentSettings {
            deployment: deployment.to_string(),
            origin: origin.to_string(),
            region: settings.state_machine_arn.as_deref().and_then(region_of),
            values,
            outputs: BTreeMap::new(),
        }
    }

    /// The settings in the outputs JSON `text` (as `OUTPUTS_COMMAND` prints it, or the whole
    /// `describe-stacks` answer) read from `name`. Every output must be one the template
    /// defines, and each setting's output must be there.
    pub fn from_stack_outputs(
        deployment: &str,
        name: &str,
        text: &str,
    ) -> Result<Self, CloudError> {
        let bad = |what: String| CloudError::Invalid(format!("{name}: {what}"));
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let (list, at) = match doc.pointer("/Stacks/0/Outputs") {
            Some(list) => (list, "Stacks[0].Outputs"),
            None => (&doc, "the document"),
        };
        let list = list.as_array().ok_or_else(|| {
            bad(format!(
                "{at} is not the list of outputs `{OUTPUTS_COMMAND}` prints"
            ))
        })?;
        let mut values = BTreeMap::new();
        let mut outputs = BTreeMap::new();
        for (i, item) in list.iter().enumerate() {
            let field = |key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| bad(format!("[{i}].{key}: missing or not a non-empty string")))
            };
            let key = field("OutputKey")?;
            let value = field("OutputValue")?.trim().to_string();
            match SETTING_OUTPUTS.iter().find(|(k, _)| *k == key) {
                Some((_, setting)) => {
                    values.insert(setting.field(), value);
                }
                None if OTHER_OUTPUTS.contains(&key) => {
                    outputs.insert(key.to_string(), value);
                }
                None => {
                    return Err(bad(format!(
                        "[{i}].OutputKey: unknown output '{key}' (infrastructure/backfill.yaml \
                         defines {}): are these the outputs of another stack?",
                        known_outputs().join(", ")
                    )));
                }
            }
        }
        for (key, setting) in SETTING_OUTPUTS {
            if !values.contains_key(setting.field()) {
                return Err(bad(format!(
                    "missing output {key} ({}); is the stack deployed from \
                     infrastructure/backfill.yaml?",
                    setting.describe().0
                )));
            }
        }
        let region = values
            .get(Setting::StateMachineArn.field())
            .and_then(|arn| region_of(arn));
        Ok(DeploymentSettings {
            deployment: deployment.to_string(),
            origin: "stack outputs".into(),
            region,
            values,
            outputs,
        })
    }

    /// The value of one setting.
    pub fn get(&self, setting: Setting) -> Option<&str> {
        self.values.get(setting.field()).map(String::as_str)
    }

    fn to_json(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("deployment".into(), self.deployment.clone().into());
        doc.insert("origin".into(), self.origin.clone().into());
        if let Some(region) = &self.region {
            doc.insert("region".into(), region.clone().into());
        }
        for (field, value) in &self.values {
            doc.insert((*field).into(), value.clone().into());
        }
        if !self.outputs.is_empty() {
            let outputs = self
                .outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()));
            doc.insert("outputs".into(), Value::Object(outputs.collect()));
        }
        Value::Object(doc)
    }

    /// Writes the file atomically (temporary file in the same folder, synced, renamed).
    pub fn write(&self, file: &Path) -> Result<(), CloudError> {
        let fail = |e: std::io::Error| {
            CloudError::Invalid(format!("cannot write {}: {e}", file.display()))
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(fail)?;
        let text = serde_json::to_string_pretty(&self.to_json())
            .map_err(|e| CloudError::Invalid(e.to_string()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
        tmp.write_all(format!("{text}\n").as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(fail)?;
        tmp.persist(file).map_err(|e| fail(e.error))?;
        Ok(())
    }

    /// Reads the file; `None` when there is none. Errors name the file and the field.
    pub fn read(file: &Path) -> Result<Option<Self>, CloudError> {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CloudError::Invalid(format!(
                    "cannot read {}: {e}",
                    file.display()
                )));
            }
        };
        Self::parse(&text)
            .map(Some)
            .map_err(|e| CloudError::Invalid(format!("{}: {e} ({})", file.display(), REWRITE)))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(mut doc) = doc else {
            return Err("not a JSON object".into());
        };
        let mut take = |key: &str, required: bool| -> Result<Option<String>, String> {
            match doc.remove(key) {
                Some(Value::String(v)) if !v.trim().is_empty() => Ok(Some(v)),
                None if !required => Ok(None),
                None => Err(format!("field `{key}` is missing")),
                Some(_) => Err(format!("field `{key}` is not a non-empty string")),
            }
        };
        let deployment = take("deployment", true)?.unwrap_or_default();
        let origin = take("origin", true)?.unwrap_or_default();
        let region = take("region", false)?;
        let mut values = BTreeMap::new();
        for setting in Setting::ALL {
            if let Some(v) = take(setting.field(), true)? {
                values.insert(setting.field(), v);
            }
        }
        let outputs = match doc.remove("outputs") {
            None => BTreeMap::new(),
            Some(Value::Object(o)) => o
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok((k, v)),
                    _ => Err(format!("field `outputs.{k}` is not a string")),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("field `outputs` is not an object".into()),
        };
        if let Some(key) = doc.keys().next() {
            return Err(format!("unknown field `{key}`"));
        }
        Ok(DeploymentSettings {
            deployment,
            origin,
            region,
            values,
            outputs,
        })
    }
}

/// How to make the file again, for the errors about it.
const REWRITE: &str = "write it again with `avesa-console cloud up --stack-outputs` or \
                       `cloud up --emulators`, or remove it";

fn known_outputs() -> Vec<&'static str> {
    SETTING_OUTPUTS
        .iter()
        .map(|(k, _)| *k)
        .chain(OTHER_OUTPUTS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(keys: &[(&str, &str)]) -> String {
        let list: Vec<Value> = keys
            .iter()
            .map(|(k, v)| serde_json::json!({"OutputKey": k, "OutputValue": v, "Description": "d"}))
            .collect();
        Value::Array(list).to_string()
    }

    const ARN: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:prod-backfill";

    fn full() -> Vec<(&'static str, &'static str)> {
        vec![
            ("StateMachineArn", ARN),
            (
                "QueueUrl",
                "https://sqs.eu-west-1.amazonaws.com/1/prod-work",
            ),
            ("DataBucket", "prod-data"),
            ("TablePrefix", "prod"),
            ("LogGroup", "/avesa/prod/workers"),
            ("DashboardName", "prod-backfills"),
        ]
    }

    #[test]
    fn stack_outputs_become_settings_written_and_read_back() {
        let s = DeploymentSettings::from_stack_outputs("prod", "-", &outputs(&full())).unwrap();
        assert_eq!(s.get(Setting::Bucket), Some("prod-data"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.outputs["DashboardName"], "prod-backfills");
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), "prod");
        s.write(&file).unwrap();
        assert_eq!(DeploymentSettings::read(&file).unwrap(), Some(s));
        // Only the file itself is left in the folder (the temporary one was renamed).
        assert_eq!(
            std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
            1
        );
        assert_eq!(
            DeploymentSettings::read(&path(dir.path(), "other")).unwrap(),
            None
        );
    }

    #[test]
    fn bad_outputs_name_the_place_and_the_output() {
        let err = |text: &str| {
            DeploymentSettings::from_stack_outputs("prod", "out.json", text)
                .unwrap_err()
                .to_string()
        };
        assert!(err("{").starts_with("out.json: not JSON"), "{}", err("{"));
        let mut keys = full();
        keys.retain(|(k, _)| *k != "QueueUrl");
        let e = err(&outputs(&keys));
        assert!(e.contains("missing output QueueUrl"), "{e}");
        let mut keys = full();
        keys.push(("Surprise", "x"));
        let e = err(&outputs(&keys));
        assert!(
            e.contains("[6].OutputKey: unknown output 'Surprise'"),
            "{e}"
        );
        let e = err(r#"[{"OutputKey": "QueueUrl", "OutputValue": 3}]"#);
        assert!(e.contains("out.json: [0].OutputValue"), "{e}");
        let e = err(r#"{"Outputs": []}"#);
        assert!(e.contains("not the list of outputs"), "{e}");
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("d.json");
        let good = DeploymentSettings::from_stack_outputs("prod", "-", &outputs(&full()))
            .unwrap()
            .to_json();
        for (change, says) in [
            ("bucket", "field `bucket` is missing"),
            ("queue_url=3", "field `queue_url` is not a non-empty string"),
            ("extra=x", "unknown field `extra`"),
        ] {
            let mut doc = good.as_object().unwrap().clone();
            match change.split_once('=') {
                None => drop(doc.remove(change)),
                Some((k, "3")) => drop(doc.insert(k.into(), 3.into())),
                Some((k, v)) => drop(doc.insert(k.into(), v.into())),
            }
            std::fs::write(&file, Value::Object(doc).to_string()).unwrap();
            let e = DeploymentSettings::read(&file).unwrap_err().to_string();
            assert!(
                e.contains(&file.display().to_string()) && e.contains(says),
                "{e}"
            );
        }
    }
}
