"""One container to update, and everything a run learns about it."""

from __future__ import annotations

from dataclasses import dataclass

from autoupdated.model import (
    AUTOUPDATE_LABEL,
    UNIT_LABEL,
    ContainerInfo,
    Credentials,
    Entry,
    ImageInfo,
    Policy,
    Status,
)
from autoupdated.reference import Reference


@dataclass
class Task:
    container: ContainerInfo
    policy: Policy
    unit: str
    authfile: str | None
    image: ImageInfo | None = None
    reference: Reference | None = None
    credentials: Credentials | None = None
    status: Status = Status.FAILED
    new_digest: str = ""
    new_image_id: str = ""
    prepared: bool = False  # the new image is in local storage, waiting for the unit restart
    error: str | None = None
    hold: str = ""  # an operator control keeps the restart waiting (engine/controls.py): why

    @property
    def raw_image(self) -> str:
        return self.container.raw_image_name

    @property
    def changes_image(self) -> bool:
        return bool(self.new_image_id) and self.new_image_id != self.container.image_id

    def fail(self, message: str) -> str:
        self.status = Status.FAILED
        self.prepared = False
        self.error = message
        return message

    def entry(self) -> Entry:
        return Entry(
            unit=self.unit,
            container_id=self.container.id,
            container_name=self.container.name,
            image=self.raw_image,
            policy=str(self.policy),
            updated=self.status,
            old_digest=self.image.digest if self.image else "",
            new_digest=self.new_digest,
            old_image_id=self.container.image_id,
            new_image_id=self.new_image_id,
            error=self.error,
        )

    @classmethod
    def moving(
        cls,
        entry: Entry,
        *,
        from_image: tuple[str, str],
        to_image: tuple[str, str],
        container_id: str | None = None,
        authfile: str | None = None,
    ) -> Task:
        """A recorded container moving from one (image ID, digest) to another: what recovery
        (old -> new, as recorded) and `autoupdated rollback` (new -> old) both finish."""
        container = ContainerInfo(
            id=container_id or entry.container_id,
            name=entry.container_name,
            image_id=from_image[0],
            raw_image_name=entry.image,
            labels={UNIT_LABEL: entry.unit, AUTOUPDATE_LABEL: entry.policy},
            state="",
        )
        try:
            policy = Policy(entry.policy)
        except ValueError:
            policy = Policy.REGISTRY
        task = cls(container, policy, entry.unit, authfile)
        task.image = ImageInfo(id=from_image[0], digest=from_image[1])
        task.new_image_id, task.new_digest = to_image
        task.status = Status.FAILED
        return task
