// Validates CycloneDX 1.6 JSON files with the CycloneDX project's own validator
// (@cyclonedx/cyclonedx-library, pinned by package-lock.json): node validate.mjs FILE...
// Prints the validation errors and exits 1 when a file is invalid, 2 on any other problem.
import { readFileSync } from 'node:fs'
import { Spec, Validation } from '@cyclonedx/cyclonedx-library'

const validator = new Validation.JsonStrictValidator(Spec.Version.v1dot6)
let bad = 0
for (const file of process.argv.slice(2)) {
  try {
    const errors = await validator.validate(readFileSync(file, 'utf8'))
    if (errors === null) {
      console.log(`${file}: valid CycloneDX 1.6`)
    } else {
      bad++
      console.log(`${file}: invalid: ${JSON.stringify(errors, null, 2)}`)
    }
  } catch (e) {
    console.error(`${file}: ${e}`)
    process.exit(2)
  }
}
process.exit(bad ? 1 : 0)
