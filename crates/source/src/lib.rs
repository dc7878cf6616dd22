//! Source stage: fetches Git repositories into a cache and checks out revisions.
