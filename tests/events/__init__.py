"""Tests of libs.events (a package so its helper modules have unique names)."""
