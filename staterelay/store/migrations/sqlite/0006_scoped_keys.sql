-- Device-scoped API keys: a key may be limited to some devices of its tenant (a JSON array
-- of device ids); NULL keeps the key's reach to every device.
ALTER TABLE api_keys ADD COLUMN device_ids TEXT
    CHECK (device_ids IS NULL OR (json_valid(device_ids) AND json_array_length(device_ids) > 0));
