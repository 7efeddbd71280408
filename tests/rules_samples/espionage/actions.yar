/*
   Deployments that copy or hide (their context is in ../contexts.json).
*/

rule Upload_Invoices_Anywhere {
   meta:
      author = "sample"
      reference = "test"
      expect = "upload-sample:high"
   strings:
      $a = "Invoice number" nocase wide ascii
   condition:
      $a
}

rule Silent_Budget_Search {
   meta:
      author = "sample"
      reference = "test"
      expect = "silent:high"
   strings:
      $a = "budget forecast" nocase
   condition:
      $a
}

rule Targeted_Upload_Ministry {
   meta:
      author = "sample"
      reference = "test"
      expect = "narrow-audience:high upload-sample:high"
   strings:
      $a = "cabinet meeting" nocase
   condition:
      $a
}

rule Targeted_Detect_Only {
   meta:
      author = "sample"
      reference = "test"
      expect = "narrow-audience:medium"
   strings:
      $a = "quarterly report" nocase
   condition:
      $a
}
