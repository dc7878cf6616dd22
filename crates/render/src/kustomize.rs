use std::ffi::OsString;

use ferry_model::Manifest;

use crate::process::{Tools, run};
use crate::{RenderError, RenderRequest, Renderer, inside_root, parse_documents};

const LOAD_RESTRICTORS: [&str; 2] = ["LoadRestrictionsRootOnly", "LoadRestrictionsNone"];

/// Runs `kustomize build <dir>` (or `kubectl kustomize <dir>`) in the working copy with
/// `--load-restrictor` from the options (default `LoadRestrictionsRootOnly`), and
/// `--enable-helm` (using [`Tools::helm`] as the Helm command) only when enabled.
#[derive(Clone, Debug)]
pub struct Kustomize {
    tools: Tools,
}

impl Kustomize {
    /// A Kustomize renderer using `tools.kustomize` under the limits of `tools`.
    pub fn new(tools: Tools) -> Self {
        Self { tools }
    }
}

impl Renderer for Kustomize {
    fn name(&self) -> &'static str {
        "kustomize"
    }

    fn render(&self, req: &RenderRequest) -> Result<Vec<Manifest>, RenderError> {
        let program = self
            .tools
            .kustomize
            .as_deref()
            .ok_or(RenderError::ToolNotFound {
                tool: "kustomize",
                env: "FERRY_KUSTOMIZE",
            })?;
        let options = req.spec.kustomize.clone().unwrap_or_default();
        let restrictor = options
            .load_restrictor
            .as_deref()
            .unwrap_or(LOAD_RESTRICTORS[0]);
        if !LOAD_RESTRICTORS.contains(&restrictor) {
            return Err(RenderError::InvalidOption {
                field: "kustomize.loadRestrictor",
                message: format!(
                    "{restrictor:?} is not one of {}",
                    LOAD_RESTRICTORS.join(", ")
                ),
            });
        }
        let dir = inside_root(req.dir, req.root)?;
        let subcommand = if program.file_name().is_some_and(|n| n == "kubectl") {
            "kustomize"
        } else {
            "build"
        };
        let mut args: Vec<OsString> = vec![
            subcommand.into(),
            dir.into(),
            "--load-restrictor".into(),
            restrictor.into(),
        ];
        if options.enable_helm {
            args.push("--enable-helm".into());
            if let Some(helm) = &self.tools.helm {
                args.extend(["--helm-command".into(), helm.into()]);
            }
        }
        let output = run(self.name(), program, &args, req.root, &self.tools)?;
        parse_documents(&output, self.name())
    }
}
