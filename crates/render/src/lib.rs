//! Render stage: turns an app directory into manifests (plain YAML, Kustomize, Helm).
