// Fetch one target from a TUF repository with tuf-js, as any TUF client would.
//
// usage: node fetch.mjs METADATA_BASE_URL TARGETS_BASE_URL TRUSTED_ROOT TARGET_PATH OUT_DIR
//
// Starts from the trusted root only (copied into OUT_DIR/metadata/root.json),
// refreshes (root, timestamp, snapshot, targets), resolves TARGET_PATH through
// any delegations, downloads it (hash and length verified by tuf-js) and prints
// "sha256 <hex> <path of the downloaded file>". Exits 1 on any error.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Updater } from 'tuf-js';

async function main(argv) {
  if (argv.length !== 5) {
    throw new Error('usage: fetch.mjs METADATA_BASE_URL TARGETS_BASE_URL TRUSTED_ROOT TARGET_PATH OUT_DIR');
  }
  const [metadataBaseUrl, targetBaseUrl, trustedRoot, targetPath, outDir] = argv;
  const metadataDir = join(outDir, 'metadata');
  const targetDir = join(outDir, 'targets');
  mkdirSync(metadataDir, { recursive: true });
  mkdirSync(targetDir, { recursive: true });
  copyFileSync(trustedRoot, join(metadataDir, 'root.json'));
  const updater = new Updater({ metadataDir, metadataBaseUrl, targetDir, targetBaseUrl });
  await updater.refresh();
  const info = await updater.getTargetInfo(targetPath);
  if (!info) {
    throw new Error(`${targetPath} is not a target of the repository`);
  }
  const file = await updater.downloadTarget(info);
  const digest = createHash('sha256').update(readFileSync(file)).digest('hex');
  console.log(`sha256 ${digest} ${file}`);
}

main(process.argv.slice(2)).catch((err) => {
  console.error(`tuf-js refused: ${err.name}: ${err.message}`);
  process.exit(1);
});
