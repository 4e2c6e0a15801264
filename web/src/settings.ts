/**
 * The panel's user settings, registered through `app.registerExtension({settings})` and shown in ComfyUI's settings
 * dialog under "Run Telemetry". They are UI preferences, plus the admin token that the panel sends with the requests
 * that change something on the server; what the backend records is configured on the server.
 */

import type { Units } from "./format";
import { isRangeKey, RANGES, type RangeKey } from "./filters";

export const SETTING_TOASTS = "RunTelemetry.Toasts";
export const SETTING_DEFAULT_RANGE = "RunTelemetry.DefaultRange";
export const SETTING_UNITS = "RunTelemetry.Units";
export const SETTING_ADMIN_TOKEN = "RunTelemetry.AdminToken";

/** Where the admin token is set, in the words of ComfyUI's settings dialog (messages name it). */
export const ADMIN_TOKEN_SETTING_PATH = "Settings › Run Telemetry › Security › Admin token";

export const DEFAULT_RANGE: RangeKey = "7d";

export interface PanelSettings {
  toasts: boolean;
  defaultRange: RangeKey;
  units: Units;
}

export interface SettingDefinition {
  id: string;
  name: string;
  type: "boolean" | "combo" | "text";
  defaultValue: unknown;
  category: string[];
  tooltip?: string;
  options?: { text: string; value: string }[];
  /** Passed to the input component (ComfyUI's FormItem binds them onto PrimeVue's InputText for "text"). */
  attrs?: Record<string, string>;
  onChange?: (value: unknown) => void;
}

/** The definitions passed to `registerExtension`. `onChange` (which ComfyUI also calls once at registration) lets
 * the panel re-render with the new value; `onTokenChange` lets it retry what the server refused. */
export function settingDefinitions(onChange: () => void, onTokenChange: () => void = () => {}): SettingDefinition[] {
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
    {
      id: SETTING_ADMIN_TOKEN,
      name: "Admin token (TELEMETRY_ADMIN_TOKEN)",
      type: "text",
      defaultValue: "",
      category: ["Run Telemetry", "Security", "Admin token"],
      tooltip:
        "Needed only when ComfyUI listens beyond this machine and the server sets TELEMETRY_ADMIN_TOKEN: the panel " +
        "sends it as \"Authorization: Bearer …\" when it saves or deletes presets, dismisses advice, reports workflow " +
        "names or changes the configuration. Reading runs needs no token. ComfyUI keeps it in your user settings.",
      attrs: { type: "password", autocomplete: "off", spellcheck: "false" },
      onChange: onTokenChange,
    },
  ];
}

/** The admin token as the panel sends it (trimmed; "" when unset or not a string). Read on each request, so a
 * changed setting applies at once. */
export function readAdminToken(get: ((id: string) => unknown) | undefined): string {
  let value: unknown;
  try {
    value = get?.(SETTING_ADMIN_TOKEN);
  } catch {
    value = undefined;
  }
  return typeof value === "string" ? value.trim() : "";
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
