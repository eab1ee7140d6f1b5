"""``staterelay doctor``'s Google Home checks: the project id and the service account key."""

from __future__ import annotations

from collections.abc import Sequence

from staterelay.integrations.google.serviceaccount import KeyFileError, ServiceAccount, key_path
from staterelay.ops.checks import Check
from staterelay.settings import GoogleSettings, Settings


def doctor_checks(settings: Settings) -> Sequence[Check]:
    """Nothing until Google Home is configured; then the project id and the key file."""
    google = settings.google
    if google == GoogleSettings(homegraph_url=google.homegraph_url, token_url=google.token_url):
        return ()
    checks: list[Check] = []
    project = google.project_id
    if project is None:
        checks.append(
            Check(
                "google project",
                "FAIL",
                "google.project_id is not set: Google's redirect URIs cannot be made",
                fix="set google.project_id to your Google Home project's id",
            )
        )
    else:
        checks.append(Check("google project", "OK", f"project {project}"))
    path = key_path(settings)
    if path is None:
        checks.append(
            Check(
                "google key",
                "WARN",
                "no service account key: Google learns of changes only when it asks, and "
                "automations do not start on StateRelay devices",
                fix="download a JSON key of a service account of the project and set "
                "google.service_account_file",
            )
        )
        return checks
    try:
        account = ServiceAccount.load(path)
    except KeyFileError as exc:
        checks.append(
            Check(
                "google key",
                "FAIL",
                str(exc),
                fix="make the key file readable by StateRelay's user, or download a new one",
            )
        )
        return checks
    if project is not None and account.project_id and account.project_id != project:
        checks.append(
            Check(
                "google key",
                "FAIL",
                f"the key is of project {account.project_id}, not {project}: Home Graph "
                "answers 403 or 404",
                fix="use a key of a service account in the Google Home project",
            )
        )
    else:
        checks.append(Check("google key", "OK", f"{path} ({account.client_email})"))
    return checks
