//! The HubSpot API emulator.
