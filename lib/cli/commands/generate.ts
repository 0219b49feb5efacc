/** `generate private-key`: a new server private key in headscale's key-file form (local). */
import { formatPrivateKeyText } from "../../auth/keyfile.ts";
import type { CommandSpec, GroupSpec } from "../command.ts";

const privateKey: CommandSpec = {
  name: "private-key",
  summary: "Generate a private key for the server (noise.private_key_path, DERP key)",
  run() {
    const text = formatPrivateKeyText(crypto.getRandomValues(new Uint8Array(32)));
    return Promise.resolve({ data: { private_key: text }, human: text });
  },
};

export const generateGroup: GroupSpec = {
  name: "generate",
  aliases: ["gen"],
  summary: "Generate commands",
  commands: [privateKey],
};
