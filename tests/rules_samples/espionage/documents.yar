/*
   Documents and mail stores, with nothing that points to malware.
*/

rule Docs_OOXML_Budget {
   meta:
      author = "sample"
      reference = "test"
      expect = "document-target:medium"
   strings:
      $ct = "[Content_Types].xml"
      $x = "xl/worksheets/sheet1.xml"
      $b = "Budget 2025" nocase
   condition:
      uint32(0) == 0x04034B50 and $ct and ($x or $b)
}

rule Docs_PDF_Negotiation {
   meta:
      author = "sample"
      reference = "test"
      expect = "document-target:medium"
   strings:
      $pdf = "%PDF-"
      $s = "negotiation position" nocase
   condition:
      $pdf at 0 and $s
}

rule Docs_OLE_Minutes {
   meta:
      author = "sample"
      reference = "test"
      expect = "document-target:medium"
   strings:
      $s = "Board minutes" wide
   condition:
      uint32be(0) == 0xD0CF11E0 and $s
}

rule Docs_RTF_Plans {
   meta:
      author = "sample"
      reference = "test"
      expect = "document-target:medium"
   strings:
      $rtf = "{\\rtf1"
      $s = "deployment plans" nocase
   condition:
      $rtf at 0 and $s
}

rule Docs_By_Extension {
   meta:
      author = "sample"
      reference = "test"
      expect = "document-target:medium"
   strings:
      $s = "merger" nocase wide ascii
   condition:
      (extension == ".docx" or extension == ".pdf" or filename matches /\.xlsx?$/i) and $s
}

rule Docs_Mail_Store {
   meta:
      author = "sample"
      reference = "test"
      expect = "document-target:medium"
   strings:
      $r = "Received: from"
      $s = "Subject: Re: the visit"
   condition:
      all of them
}

rule Docs_PST {
   meta:
      author = "sample"
      reference = "test"
      expect = "document-target:medium"
   strings:
      $m = "!BDN"
      $s = "ambassador" nocase wide
   condition:
      $m at 0 and $s
}

rule Upload_Docx_By_Extension {
   meta:
      author = "sample"
      reference = "test"
      expect = "upload-sample:high silent:high document-target:medium"
   strings:
      $zip = { 50 4B 03 04 }
   condition:
      $zip at 0 and extension == ".docx"
}
