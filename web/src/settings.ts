/**
 * The panel's user settings, registered through `app.registerExtension({settings})` and shown in ComfyUI's settings
 * dialog under "Run Telemetry". They are UI preferences only; what the backend records is configured on the server.
 */

import type { Units } from "./format";
import { isRangeKey, RANGES, type RangeKey } from "./filters";

export const SETTING_TOASTS = "RunTelemetry.Toasts";
export const SETTING_DEFAULT_RANGE = "RunTelemetry.DefaultRange";
export const SETTING_UNITS = "RunTelemetry.Units";

export const DEFAULT_RANGE: RangeKey = "7d";

export interface PanelSettings {
  toasts: boolean;
  defaultRange: RangeKey;
  units: Units;
}

export interface SettingDefinition {
  id: string;
  name: string;
  type: "boolean" | "combo";
  defaultValue: unknown;
  category: string[];
  tooltip?: string;
  options?: { text: string; value: string }[];
  onChange?: (value: unknown) => void;
}

/** The definitions passed to `registerExtension`. `onChange` (which ComfyUI also calls once at registration) lets
 * the panel re-render with the new value. */
export function settingDefinitions(onChange: () => void): SettingDefinition[] {
  return [
    {
      id: SETTING_TOASTS,
      name: "Show a toast when a run fails or a new warning appears",
      type: "boolean",
      defaultValue: true,
      category: ["Run Telemetry", "Notifications", "Toasts"],
      onChange,
    },
    {
      id: SETTING_DEFAULT_RANGE,
      name: "Default time range of the panel",
      type: "combo",
      defaultValue: DEFAULT_RANGE,
      category: ["Run Telemetry", "Panel", "Default time range"],
      options: RANGES.map((r) => ({ text: r.label, value: r.key })),
      onChange,
    },
    {
      id: SETTING_UNITS,
      name: "Memory units",
      type: "combo",
      defaultValue: "binary",
      category: ["Run Telemetry", "Panel", "Memory units"],
      tooltip: "Binary: GiB (1024³ bytes), as PyTorch and nvidia-smi report. Decimal: GB (10⁹ bytes).",
      options: [
        { text: "Binary (GiB)", value: "binary" },
        { text: "Decimal (GB)", value: "decimal" },
      ],
      onChange,
    },
  ];
}

/** Reads the settings through `get` (ComfyUI's `extensionManager.setting.get`), with defaults for anything
 * missing or invalid (the setting store may not be ready, or a value may come from an older version). */
export function readSettings(get: ((id: string) => unknown) | undefined): PanelSettings {
  const read = (id: string): unknown => {
    try {
      return get?.(id);
    } catch {
      return undefined;
    }
  };
  const toasts = read(SETTING_TOASTS);
  const range = read(SETTING_DEFAULT_RANGE);
  const units = read(SETTING_UNITS);
  return {
    toasts: typeof toasts === "boolean" ? toasts : true,
    defaultRange: isRangeKey(range) && range !== "custom" ? range : DEFAULT_RANGE,
    units: units === "decimal" ? "decimal" : "binary",
  };
}
