//! Helpers for the tests that run against the local world.
